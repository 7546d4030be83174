"""What every exercise checker owes a learner, whatever it checks.

A test file of checkers defines ``EXERCISES = {name: (check, reference, wrong, unrelated)}`` (``wrong``:
``{mistake id: a learner's wrong function}``; ``unrelated``: ``{kind: a wrong function no catalogue names}``)
and adds these tests with ``globals().update(contract_tests(EXERCISES))``.
"""

import pytest


def contract_tests(exercises: dict) -> dict:
    """The parametrized tests of the checker contract (CHAPTERS.md) over ``exercises``, by test name."""
    catalogue = [(name, mistake) for name, (_, _, wrong, _) in exercises.items() for mistake in wrong]
    unrelated = [(name, kind) for name, (_, _, _, functions) in exercises.items() for kind in functions]

    @pytest.mark.parametrize("name", exercises)
    def test_the_reference_answer_passes(name):
        check, reference, _, _ = exercises[name]
        feedback = check(reference)
        assert feedback.passed, feedback.message
        assert feedback.mistake is None

    @pytest.mark.parametrize(("name", "mistake"), catalogue)
    def test_each_catalogued_mistake_is_named(name, mistake):
        check, _, wrong, _ = exercises[name]
        feedback = check(wrong[mistake])
        assert (feedback.passed, feedback.mistake) == (False, mistake), feedback.message
        assert feedback.message

    @pytest.mark.parametrize(("name", "kind"), unrelated)
    def test_an_unrelated_wrong_function_fails(name, kind):
        check, _, _, functions = exercises[name]
        feedback = check(functions[kind])
        assert not feedback.passed
        assert feedback.mistake is not None and feedback.mistake != "checker_error", feedback.message

    @pytest.mark.parametrize("name", exercises)
    def test_a_stub_is_not_yet_implemented(name):
        def stub(*args):
            raise NotImplementedError()

        feedback = exercises[name][0](stub)
        assert (feedback.passed, feedback.mistake) == (False, "not_implemented")
        assert "not yet implemented" in feedback.message

    @pytest.mark.parametrize("name", exercises)
    def test_any_other_exception_is_shown_with_its_type_message_and_a_hint(name):
        def broken(*args):
            raise ValueError("the learner's bug")

        feedback = exercises[name][0](broken)
        assert (feedback.passed, feedback.mistake) == (False, "raised")
        assert "ValueError: the learner's bug" in feedback.message
        assert "Hint:" in feedback.message and name in feedback.message

    return {test.__name__: test for test in (
        test_the_reference_answer_passes, test_each_catalogued_mistake_is_named, test_an_unrelated_wrong_function_fails,
        test_a_stub_is_not_yet_implemented, test_any_other_exception_is_shown_with_its_type_message_and_a_hint)}
