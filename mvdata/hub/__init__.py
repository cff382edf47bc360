"""Publishing a built shard directory on the Hugging Face Hub, and bringing it back.

:mod:`~mvdata.hub.client` (the ``huggingface_hub`` client, its errors, token redaction) ·
:mod:`~mvdata.hub.card` (the published card, from :mod:`mvdata.shards.card`) ·
:mod:`~mvdata.hub.plan` (files, hashes and commits of bounded size) ·
:mod:`~mvdata.hub.publish` (``mvdata publish``) · :mod:`~mvdata.hub.pull` (``mvdata pull``).
Needs the ``hub`` extra (``huggingface_hub``) for the network steps only; a dry run needs none.
Nothing in the library imports this package (an import-linter contract): only the CLI does.
"""
