"""The model and everything a run is defined by, with no engine, store, table or figure.

``config`` (RunConfig), ``data`` (sparse data and seed streams), ``model`` (init and the plain
torch definition), ``schedule`` (learning rates), ``metrics`` (dimensionality, norms),
``trainer`` (the contract every engine keeps), ``evaluation`` (the losses every run stores) and
``paper`` (the paper's numbers). Modules are imported one by one, so that reading a config
never loads torch or numba.
"""
