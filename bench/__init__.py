"""The benchmarks, run from the repository root as modules (the GPU image finds the package there,
mtlvsift need not be installed):

    python -m bench.gpu_train        the project's loop against the HF Trainer (one GPU, or --tiny)
    python -m bench.cpu_train        the loop on the CPU, tiny model and MiniLM
    python -m bench.paper_cost       projected GPU-hours of the paper's experiment
    python -m bench.compare_report   wall time of scripts/compare.py on the 9x9 synthetic tree

The pieces they share: ``fixtures`` (stand-in GLUE folder, random model, default paths),
``measure`` (FLOPs, tokens and padding, steady rates), ``loop_runner`` (one run of the project's
loop, measured from its run record), ``hf_trainer`` (the Trainer baseline), ``report`` (tables).
Importing any of them sets no environment variable and imports neither transformers nor
datasets: each script's ``main()`` calls ``fixtures.offline_environment()`` first.
"""
