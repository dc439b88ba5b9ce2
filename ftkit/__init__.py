"""ftkit: fine-tune pretrained transformers from the command line, with honest metrics."""

__version__ = "0.1.0"
