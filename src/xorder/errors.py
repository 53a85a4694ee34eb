"""The one exception type for mistakes a user can fix: reported as one line, exit status 2."""


class XorderError(Exception):
    """A user mistake (unknown name, malformed file, missing data offline) with a message that says what to do."""


EXIT_USER_ERROR = 2


class Preempted(Exception):
    """The job was asked to stop (Slurm's signal before its time limit): the running stage saved a checkpoint,
    and the requeued job resumes from it."""
