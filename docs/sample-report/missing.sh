#!/bin/sh
# Runs the report still lacks (written by scripts/compare.py).
set -e
