"""Generation of diagnoses by a language model, behind one interface.

This package runs in the isolated generation environment (vLLM pins its own torch and
transformers), so nothing here imports Airflow, and the heavy libraries are imported inside
the backend that needs them. The Airflow side talks to it only through plain data: a
request dict in, a response dict out (``medic.llm.worker.run``).
"""
