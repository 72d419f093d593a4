//! Reading export files (CSV/TSV, fixed-width, DBF, JSON Lines) in their text encoding into
//! typed values, record by record, telling bad records apart from unreadable files.
