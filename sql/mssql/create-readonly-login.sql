-- A least-privilege login for legacy-bridge on SQL Server. Review, then run as a DBA with
-- sqlcmd, e.g.:
--   sqlcmd -S sql01 -E -v Database="ERP" Login="legacy_bridge" Password="..." -i create-readonly-login.sql
-- It can read tables and views of schema dbo and the catalog, read change tracking, and
-- nothing else: no writes, no DDL. Put the password in the bridge's environment, not in its
-- config file (password = "${ERP_PASSWORD}").

USE [master];
CREATE LOGIN [$(Login)] WITH PASSWORD = N'$(Password)', CHECK_POLICY = ON,
    DEFAULT_DATABASE = [$(Database)];
GO

USE [$(Database)];
CREATE USER [$(Login)] FOR LOGIN [$(Login)] WITH DEFAULT_SCHEMA = [dbo];
-- Read every table and view of dbo (INFORMATION_SCHEMA shows what the user may select).
GRANT SELECT ON SCHEMA::[dbo] TO [$(Login)];
-- Only for the mssql-change-tracking strategy: read CHANGETABLE of dbo's tables.
GRANT VIEW CHANGE TRACKING ON SCHEMA::[dbo] TO [$(Login)];
GO

-- Only for the changelog strategy (a trigger-fed log table): the bridge deletes the log rows
-- it has read.
-- GRANT DELETE ON [dbo].[LB_CHANGELOG] TO [$(Login)];
