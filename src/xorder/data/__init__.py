"""Data: loading sources, validation, tokenization, collation and multi-task sampling."""
