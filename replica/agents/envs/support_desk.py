"""The demo's support desk: customers, orders, products and tickets, with eight tools over them.

Every state change is recorded as a fact the end-state check can see, including how it was
done: a refund or an address change remembers whether the customer's identity had been verified
first. So "verify before any account change" is visible in the end state, not only in the order
of the calls. Replies to the customer are the agent's final answer (checked by the strings it
must contain), so no free text ever enters the state.

State (plain JSON):

    customers: {C-104: {name, email, address, verified, store_credit, address_change}}
    orders:    {O-482: {customer_id, product_id, total, status, refund}}
    products:  {P-17: {name, category, price}}
    tickets:   {T-305: {customer_id, order_id, subject, status, escalated_to}}
"""

from __future__ import annotations

from typing import Any

from replica.agents.envs.base import Environment, ToolError, register

ESCALATION_TEAMS = ["billing", "returns", "shipping", "tier2"]
MAX_CREDIT = 500  # dollars: a larger goodwill credit needs a human, so the tool refuses it


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    """One OpenAI function-tool schema (short descriptions: they sit in every prompt)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_CUSTOMER = {"customer_id": {"type": "string"}}
_ORDER = {"order_id": {"type": "string"}}
_TICKET = {"ticket_id": {"type": "string"}}
_AMOUNT = {"amount": {"type": "integer"}}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    _function("get_customer", "Look up a customer.", _CUSTOMER, ["customer_id"]),
    _function("get_order", "Look up an order.", _ORDER, ["order_id"]),
    _function("verify_identity", "Verify a customer's identity.", _CUSTOMER, ["customer_id"]),
    _function("issue_refund", "Refund an order.", _ORDER | _AMOUNT, ["order_id", "amount"]),
    _function("offer_store_credit", "Add store credit.", _CUSTOMER | _AMOUNT, ["customer_id", "amount"]),
    _function(
        "escalate",
        "Hand a ticket to a team.",
        _TICKET | {"team": {"type": "string", "enum": ESCALATION_TEAMS}},
        ["ticket_id", "team"],
    ),
    _function(
        "update_address",
        "Change a customer's address.",
        _CUSTOMER | {"address": {"type": "string"}},
        ["customer_id", "address"],
    ),
    _function("close_ticket", "Close a ticket.", _TICKET, ["ticket_id"]),
]


@register
class SupportDesk(Environment):
    """A small e-commerce support desk; see the module docstring for the state layout."""

    name = "support_desk"

    def default_state(self) -> dict[str, Any]:
        return {"customers": {}, "orders": {}, "products": {}, "tickets": {}}

    def tool_schemas(self) -> list[dict[str, Any]]:
        return TOOL_SCHEMAS

    # -- lookups -----------------------------------------------------------------------------

    def _get(self, table: str, key: str, what: str) -> dict[str, Any]:
        rows = self.state.get(table, {})
        if not isinstance(key, str) or key not in rows:
            raise ToolError(f"no {what} with id {key!r}")
        return rows[key]

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        customer = self._get("customers", customer_id, "customer")
        fields = ("name", "email", "address", "verified", "store_credit")
        return {"customer_id": customer_id} | {k: customer.get(k) for k in fields}

    def get_order(self, order_id: str) -> dict[str, Any]:
        order = self._get("orders", order_id, "order")
        product = self.state["products"].get(order["product_id"], {})
        return {
            "order_id": order_id,
            "customer_id": order["customer_id"],
            "product": product.get("name"),
            "category": product.get("category"),
            "total": order["total"],
            "status": order["status"],
        }

    # -- account changes ---------------------------------------------------------------------

    def verify_identity(self, customer_id: str) -> dict[str, Any]:
        customer = self._get("customers", customer_id, "customer")
        customer["verified"] = True
        return {"customer_id": customer_id, "verified": True}

    def issue_refund(self, order_id: str, amount: int) -> dict[str, Any]:
        order = self._get("orders", order_id, "order")
        if order["status"] == "refunded":
            raise ToolError(f"order {order_id} is already refunded")
        if not isinstance(amount, int) or not 0 < amount <= order["total"]:
            raise ToolError(f"amount must be a whole number from 1 to {order['total']}, got {amount!r}")
        customer = self.state["customers"].get(order["customer_id"], {})
        order["status"] = "refunded"
        # Recorded so a check can tell a refund made after verification from one made before it.
        order["refund"] = {"amount": amount, "identity_verified": bool(customer.get("verified"))}
        return {"order_id": order_id, "refunded": amount}

    def offer_store_credit(self, customer_id: str, amount: int) -> dict[str, Any]:
        customer = self._get("customers", customer_id, "customer")
        if not isinstance(amount, int) or not 0 < amount <= MAX_CREDIT:
            raise ToolError(f"amount must be a whole number from 1 to {MAX_CREDIT}, got {amount!r}")
        customer["store_credit"] = customer.get("store_credit", 0) + amount
        return {"customer_id": customer_id, "store_credit": customer["store_credit"]}

    def update_address(self, customer_id: str, address: str) -> dict[str, Any]:
        customer = self._get("customers", customer_id, "customer")
        if not isinstance(address, str) or not address.strip():
            raise ToolError("address must be a non-empty string")
        customer["address"] = address.strip()
        customer["address_change"] = {"identity_verified": bool(customer.get("verified"))}
        return {"customer_id": customer_id, "address": customer["address"]}

    # -- tickets -----------------------------------------------------------------------------

    def escalate(self, ticket_id: str, team: str) -> dict[str, Any]:
        ticket = self._get("tickets", ticket_id, "ticket")
        if team not in ESCALATION_TEAMS:
            raise ToolError(f"team must be one of {', '.join(ESCALATION_TEAMS)}, got {team!r}")
        ticket["status"] = "escalated"
        ticket["escalated_to"] = team
        return {"ticket_id": ticket_id, "escalated_to": team}

    def close_ticket(self, ticket_id: str) -> dict[str, Any]:
        ticket = self._get("tickets", ticket_id, "ticket")
        ticket["status"] = "closed"
        return {"ticket_id": ticket_id, "status": "closed"}
