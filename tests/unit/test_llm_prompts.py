"""The LLM kinds' prompts put what agents share before what is theirs, for the servers' prefix
caches, and the stand-in server measures how much of what it is sent lies in a shared prefix."""

import time

from agents.core import AgentContext, Message, Observation, Profile
from agents.kinds.llm_guess import LLMGuesser, LLMGuessParams, read_number
from agents.kinds.llm_social import LLMSocial, LLMSocialParams
from agents.llm_stub import Prefixes, Served, answer

PUBLIC = {"ratio_text": "2/3", "max_value": 100, "rounds": 5, "last": {"avg": 30.0, "win": 20.0}}


def _guesser(agent_id: int, name: str, **params: object) -> LLMGuesser:
    profile = Profile(agent_id, name, "llm", {}, f"{name} is a teacher.")
    return LLMGuesser(profile, AgentContext(1, LLMGuessParams(model="m", **params)))


def _played(agent: LLMGuesser, mine: float) -> LLMGuesser:
    """The agent after round 1, in which it answered `mine`."""
    agent.answered = (1, mine)
    agent._remember(PUBLIC)
    return agent


def _flat(messages: list[dict[str, str]]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _shared_until_own(first: str, second: str, own: str) -> None:
    """Both prompts are the same up to where the first one's own text starts, and differ after."""
    cut = first.index(own)
    assert first[:cut] == second[:cut]
    assert first[cut:] != second[cut:]


def test_two_guessers_prompts_are_identical_up_to_their_own_answers_and_personas():
    round_2 = Observation(2, PUBLIC)
    ada, bo, cy = (
        _played(_guesser(i, name, system="rational", prompt="step_by_step"), mine)
        for i, name, mine in ((1, "Ada Byron", 33), (2, "Bo Chen", 12.5), (3, "Cy Young", 33))
    )
    first = ada.messages(round_2)
    rules = (
        "You are playing a game. Every player picks a number between 0 and 100. The player whose "
        "number is closest to 2/3 of the average of all the numbers wins. All players are rational."
    )
    assert first[0] == bo.messages(round_2)[0] == {"role": "system", "content": rules}
    assert first[1]["content"] == (
        "Round 2 of 5.\n"
        "In round 1 the mean was 30.00, the target 20.00.\n"
        "Think step by step, then report your number.\n"
        "In round 1 you chose 33.\n"
        "You are Ada Byron. Ada Byron is a teacher."
    )
    _shared_until_own(_flat(first), _flat(bo.messages(round_2)), "In round 1 you chose 33")
    # Those who answered alike share their prompts up to the persona.
    _shared_until_own(_flat(first), _flat(cy.messages(round_2)), "You are Ada Byron.")
    assert read_number(answer(first), 100) is not None  # the stand-in still reads it as a guess


def test_a_guessers_summary_announcements_and_messages_keep_their_places():
    agent = _played(_guesser(1, "Ada Byron", memory="summary", persona=False), 40)
    observation = Observation(2, {**PUBLIC, "announcements": ["Be bold."]}, (Message(None, 1, "Hi"),))
    assert agent.messages(observation)[1]["content"] == (
        "Round 2 of 5.\n"
        "Announcement: Be bold.\n"
        "Last round the average was 30.00 and the target 20.00.\n"
        "Report your number directly, without any other words.\n"
        "Over 1 earlier rounds your answers averaged 40.00.\n"
        "A message for you: Hi"
    )


def test_two_social_agents_prompts_are_identical_up_to_their_own_feeds_and_personas():
    def member(agent_id: int, name: str) -> LLMSocial:
        profile = Profile(agent_id, name, "llm", {}, f"{name} likes cats.")
        return LLMSocial(profile, AgentContext(1, LLMSocialParams(model="m")))

    observation = Observation(3, {"topic": "a new park"})
    feed = {"following": 1, "posts": [{"author": 9, "text": "Nice!"}]}
    first = member(1, "Ada Byron").messages(observation, feed)
    second = member(2, "Bo Chen").messages(observation, {"news": {"text": "It opens."}})
    assert first[0] == second[0]
    assert first[0]["content"].startswith(
        "You use a social network where people talk about this: a new park."
    )
    assert (
        first[1]["content"]
        == "Latest posts of the 1 people you follow:\n- 9: Nice!\nYou are Ada Byron. Ada Byron likes cats."
    )
    _shared_until_own(_flat(first), _flat(second), "Latest posts")
    third = member(3, "Cy Young").messages(observation, feed)
    _shared_until_own(_flat(first), _flat(third), "You are Ada Byron.")
    assert answer(first).startswith("{")  # answered as JSON, as the prompt asks


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_the_shared_prefix_is_counted_in_whole_words_against_the_closest_earlier_prompt():
    prefixes = Prefixes()
    assert prefixes.see(_user("the rules of the game. You are Ada")) == 0  # nothing before it
    assert prefixes.see(_user("the rules of the game. You are Bo")) == 7  # "Ada" ≠ "Bo"
    assert prefixes.see(_user("the rules of the game. You are Bob")) == 7  # "Bo" is not "Bob"
    assert prefixes.see(_user("the rules of the game. You are Bob")) == 8  # seen whole before
    assert prefixes.see(_user("the rulers")) == 1
    assert prefixes.see(_user("zzz")) == 0
    # Messages and roles count: the same words split otherwise, or said by another role, differ.
    system = [{"role": "system", "content": "the rules"}, {"role": "user", "content": "of the game"}]
    assert prefixes.see(system) == 0
    assert (
        prefixes.see([{"role": "system", "content": "the rules of"}, {"role": "user", "content": "x"}]) == 2
    )
    assert prefixes.see([*system, {"role": "user", "content": "more"}]) == 5


def test_only_the_window_of_recent_prompts_is_kept():
    prefixes = Prefixes(window=2)
    for text in ("a b c", "x y", "z"):
        prefixes.see(_user(text))
    assert prefixes.see(_user("a b d")) == 0  # "a b c" has left the window
    assert prefixes.see(_user("a b d e")) == 3


def test_stats_give_the_share_and_no_authorization():
    served = Served(prompt_tokens=40, shared_tokens=30, authorizations={"Bearer secret"})
    stats = served.stats()
    assert stats["shared_prefix"] == 0.75
    assert "authorizations" not in stats
    assert "secret" not in repr(stats)


def test_measuring_ten_thousand_prompts_of_a_round_is_cheap():
    agents = [_guesser(i, f"Agent {i}") for i in range(10_000)]
    prompts = [a.messages(Observation(1, PUBLIC)) for a in agents]
    prefixes = Prefixes()
    started = time.process_time()
    shared = sum(prefixes.see(p) for p in prompts)
    spent = time.process_time() - started
    assert spent < 0.5  # measured about 0.05 s
    assert shared > 0
