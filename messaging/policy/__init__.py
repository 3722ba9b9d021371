"""The send policy: who may be messaged, when, and how often, decided in one place.

- `actions`: what an error answer does (`judge`, `apply_effects`), for send answers and
  failed-status webhooks alike.
- `optout`: what opting out means (`opt_out`, `opt_in`, `mark_undeliverable`).
- `gate`: the last check before the HTTP request, run on every claimed batch: suppression,
  validity, sending windows, the frequency cap, the portfolio budget.
- `windows`, `frequency`, `budget`: the rules the gate asks.
- `canary`: a share of a campaign first, the rest held (never claimed) until its verdict.
- `breaker`: the rolling failure rate both outcome paths feed (`observe`).
- `imports`: the rules an import applies to each number (+1 marketing, not on WhatsApp).
- `plan`: the audience as the policy will treat it, before launch.

docs/policy.md describes each rule and where it is enforced.
"""
