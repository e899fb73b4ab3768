"""Conversations, their items, and projects: the rules between the HTTP handlers and the database."""
