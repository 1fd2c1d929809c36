"""The `radtransfer` command (also `python -m radtransfer`): ``main`` runs it, ``build_parser`` is its parser.

``main`` (the process: logging, errors, TensorFlow's start), ``options`` (the parser), ``commands`` (one
handler per subcommand).
"""

from .main import _show_data_log as _show_data_log
from .main import main
from .options import EXIT_FAILURE, EXIT_USAGE, UsageError, build_parser

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "UsageError", "build_parser", "main"]
