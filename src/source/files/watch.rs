//! Watching an export folder: which files match a resource's pattern and are complete
//! (stable, marked, or renamed into place), and archiving them once processed.
