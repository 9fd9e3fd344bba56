"""Plotting helpers of the book: functions that take arrays or library objects and return figures."""
