"""scripts/run_grid.py's program: the experiment (tasks x seeds x methods) as one plan, run in
this process, in parallel processes, or written out as a shell or SLURM script."""
