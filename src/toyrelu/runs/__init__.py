"""Running configs and keeping their results: ``training`` (one run: prepare, train, evaluate),
``grid`` (sweep grids and their cost), ``presets`` and ``knobs`` (named sweeps and the sensitivity
study), ``resources`` (the device and the number of workers), ``limits`` (what a machine can hold: a
run's memory, the sizes refused before any work), ``executors`` (where runs train, with ``workers``,
the local process pool), ``cluster_ray`` and ``cluster_slurm`` (runs as Ray tasks or SLURM jobs,
with ``cluster_queue``, the Ray tasks' queue, ``cluster_node``, what a node runs, and
``cluster_procs``, the processes of a local Ray instance), ``sweep`` (resumable sweeps),
``progress``, ``store`` (the SQLite results, with ``store_schema``, ``store_leases`` and
``store_check``, and ``stored``, what a stored run must hold) and ``outputs`` (output files
written whole, never onto an input)."""
