"""The report and the summaries: ``build`` collects sections into one page, ``layout`` writes it
as HTML and markdown and ``table`` writes every table of it; the sections come from the
experiments' records (``toyrelu.experiments``) and from ``sensitivity``, and ``sections``
re-exports their types. ``summary`` and ``m2`` give the summary.md of ``toyrelu reproduce`` for
the m = 2 presets, ``experiments`` that of the other experiments' presets."""
