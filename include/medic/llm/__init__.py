"""Generation of diagnoses by a language model, behind one interface.

This package runs in the isolated generation environment (vLLM and llama.cpp bring their own
libraries), so nothing here imports Airflow, and the heavy libraries are imported inside the
backend that needs them. The Airflow side talks to it only through plain data: a request dict
in, a response dict out (``medic.llm.worker.run``).

- ``base``: the backend protocol, settings and result types, ``make_backend``.
- ``llamacpp``, ``cpu``, ``vllm``, ``openai``: one backend each.
- ``models``: packaged model weights, assembled and checked against their SHA-256.
- ``prompt``: the prompt builder; ``worker``: the request loop; ``client``: runs the worker
  in another interpreter.
"""
