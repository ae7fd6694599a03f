import pytest

from softprompt.errors import FieldError
from softprompt.quant import QUANT_MODES, Quantization


def test_parse_round_trip_and_defaults():
    assert QUANT_MODES == ("none", "int8", "int4")
    assert not Quantization().enabled and Quantization.parse(None) == Quantization()
    assert Quantization.parse("INT8") == Quantization("int8")
    assert Quantization.parse("int4") == Quantization("int4", 32)
    assert Quantization.parse("int4/128") == Quantization("int4", 128)
    for q in (Quantization("int8"), Quantization("int4", 64), Quantization()):
        assert Quantization.from_dict(q.to_dict()) == q
        assert Quantization.parse(str(q)) == q


@pytest.mark.parametrize("bad", ["int3", "fp8", "int8/32", "int4/x", ""])
def test_bad_values_name_the_flag(bad):
    with pytest.raises(FieldError, match="quantize"):
        Quantization.parse(bad)


def test_bad_group_size_is_refused():
    with pytest.raises(FieldError, match="group_size"):
        Quantization("int4", 48)
