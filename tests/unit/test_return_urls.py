"""Return URL templates: our {ORDER_ID} filled in, Stripe's {CHECKOUT_SESSION_ID} left for it."""

from __future__ import annotations

from h2s_checkout.domain import return_urls

BASE = "https://pay.example"


def test_by_default_the_customer_returns_to_this_services_pages():
    assert return_urls.success_url("ORD-00AB", BASE) == (
        f"{BASE}/checkout/success?order_id=ORD-00AB&session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert return_urls.cancel_url("ORD-00AB", BASE) == f"{BASE}/checkout/cancel?order_id=ORD-00AB"


def test_a_storefronts_templates_get_the_order_id_wherever_it_is_named():
    template = "https://shop.example/o/{ORDER_ID}/done?again={ORDER_ID}&s={CHECKOUT_SESSION_ID}"

    assert return_urls.success_url("ORD-00AB", BASE, template) == (
        "https://shop.example/o/ORD-00AB/done?again=ORD-00AB&s={CHECKOUT_SESSION_ID}"
    )
    assert return_urls.cancel_url("ORD-00AB", BASE, "https://shop.example/cart") == (
        "https://shop.example/cart"
    )


def test_an_order_id_cannot_break_out_of_its_place_in_the_url():
    assert (
        return_urls.cancel_url("a&b=c/d", BASE) == f"{BASE}/checkout/cancel?order_id=a%26b%3Dc%2Fd"
    )


def test_templates_with_only_known_variables_are_usable():
    assert return_urls.template_problem(return_urls.default_success_url(BASE), success=True) is None
    assert return_urls.template_problem(return_urls.default_cancel_url(BASE), success=False) is None
    assert return_urls.template_problem("http://127.0.0.1:3000/ok", success=True) is None
