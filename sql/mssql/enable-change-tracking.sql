-- Enables SQL Server Change Tracking for legacy-bridge's `mssql-change-tracking` capture
-- strategy. Review, then run as a DBA (ALTER DATABASE and ALTER TABLE permission), e.g.:
--   sqlcmd -S sql01 -E -v Database="ERP" Table="dbo.STOCK_LEVEL" RetentionDays=3 -i enable-change-tracking.sql
-- Run the last statement once per table the bridge should follow (the table needs a primary
-- key). Change tracking records which keys changed, not the values; the bridge reads the
-- current row back. It costs one internal table per tracked table and a little work per
-- write; nothing in the legacy application changes.

USE [$(Database)];

-- The bridge reads CHANGETABLE and the table in one snapshot transaction, so it never
-- blocks the POS and never sees half a transaction.
ALTER DATABASE [$(Database)] SET ALLOW_SNAPSHOT_ISOLATION ON;
GO

-- Retention: how long changes stay readable. If the bridge is stopped longer than this, the
-- resource stops with "change tracking version ... has expired" until an operator resyncs it
-- (or, with capture.on_expired = "reconcile", diffs the whole table once). Keep it well above
-- the longest outage you expect.
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
    ALTER DATABASE [$(Database)]
        SET CHANGE_TRACKING = ON (CHANGE_RETENTION = $(RetentionDays) DAYS, AUTO_CLEANUP = ON);
GO

IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'$(Table)'))
    ALTER TABLE $(Table) ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO

-- Check: the tracked tables and the oldest version still readable for each.
SELECT OBJECT_SCHEMA_NAME(object_id) AS table_schema, OBJECT_NAME(object_id) AS table_name,
       CHANGE_TRACKING_MIN_VALID_VERSION(object_id) AS min_valid_version,
       CHANGE_TRACKING_CURRENT_VERSION() AS current_version
FROM sys.change_tracking_tables;
