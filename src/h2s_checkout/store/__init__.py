"""PostgreSQL access through asyncpg: the pool and one module of SQL per table family."""
