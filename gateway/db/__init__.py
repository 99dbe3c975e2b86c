"""Database adapters: schema, engines, migrations."""
