"""The agent loop, by job: the state database (``state``), intake and indexing (``intake``), completion
checks (``completion``), scoring and saving (``scoring``), saliency as files arrive (``saliency``), and what
they share (``base``). ``mediqa.agent.service.Agent`` puts them together and runs the passes."""
