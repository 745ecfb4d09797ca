"""The report and the summaries: ``build`` collects sections into one page, ``layout`` writes it
as HTML and markdown, ``sections`` are its parts, and ``m2``, ``experiments`` and
``sensitivity`` provide them; ``summary`` is the summary.md of ``toyrelu reproduce``."""
