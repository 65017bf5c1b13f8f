"""The centre's database schema: numbered SQL files, applied in order and recorded."""
