"""A metric as users bring them: a local Hugging Face `evaluate` module (no hub), the share of predictions equal to
their reference, as a fraction. The tests name it `evaluate:<this folder>` in a target's metrics."""

import datasets
import evaluate


class ExactShare(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="the share of predictions equal to their reference (0-1)",
            citation="",
            inputs_description="predictions and references: class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        same = sum(int(p == r) for p, r in zip(predictions, references))
        return {"exact_share": same / len(references), "examples": len(references)}
