"""Small example actors: a synthetic market, a book keeper that quotes, and a checking sink."""
