"""Metrics of the accuracy matrix and atomic writers for run files."""
