"""The report and the other documents built from a store.

``build`` collects sections into one page, ``layout`` writes it as HTML and markdown and
``table`` writes every table of it; the sections come from the experiments' records
(``toyrelu.experiments``) and from ``sensitivity``. ``reproduce`` writes what ``toyrelu
reproduce`` leaves beside its store: ``summary`` the summary.md of the m = 2 presets, ``records``
that of the other experiments' presets. ``store_figures`` is what ``toyrelu figures`` draws and
``export`` what ``toyrelu export`` writes."""
