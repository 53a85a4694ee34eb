"""xorder: does the order of intermediate-task training matter for zero-shot cross-lingual transfer?"""

__version__ = "0.1.0"
