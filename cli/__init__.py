"""Thin Typer front ends: parse, call one library function, print. The library never imports this."""
