/** The SQLite implementation of the store: funcd's default, one file in the data directory. */
export { openSqliteStore, type SqliteStoreOptions } from "./open.js";
