"""Who pays: wallets -> users -> billing accounts, their virtual API keys, and their read-only history."""
