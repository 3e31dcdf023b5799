#!/bin/sh
# Runs the report still lacks (written by scripts/compare.py), single runs first (STILTs and dynamic MTL read them); last, the seeds of the cells not pooled, retrained with --overwrite.
set -e
