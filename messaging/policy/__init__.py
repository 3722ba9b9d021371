"""The send policy: who may be messaged, when, and how often, decided in one place.

- `actions`: what an error answer does (`judge`, `apply_effects`), for send answers and
  failed-status webhooks alike.
- `optout`: what opting out means (`opt_out`, `opt_in`, `mark_undeliverable`).
- `gate`: the last check before the HTTP request, run on every claimed batch: suppression,
  validity, sending windows, the frequency cap, the portfolio budget, the canary.
- `windows`, `frequency`, `budget`, `breaker`: the rules the gate and the flusher ask.
- `imports`: the rules an import applies to each number (+1 marketing, not on WhatsApp).
- `plan`: the audience as the policy will treat it, before launch.

docs/policy.md describes each rule and where it is enforced.
"""
