"""The command line, ``toyrelu``: ``reproduce``, ``sweep``, ``figures``, ``report``, ``export``,
``animate``, ``presets`` and ``sensitivity``.

``options`` makes every RunConfig field an option typed by the field (``--n-features 10000``; a
comma list makes it a sweep axis: ``--n-train 3,5,10``), ``parser`` the parser of every command,
``commands`` what each does (parse, call the layers below, print) and ``entry`` the entry point:
bad input ends with one line on stderr and exit code 2.
"""

from toyrelu.cli.entry import main
from toyrelu.cli.parser import UsageError, build_parser

__all__ = ["UsageError", "build_parser", "main"]
