"""SQL that renders each queue row's jsonb `components`, the same as `render_plan`."""

from __future__ import annotations

from typing import Any

from campaigns.csv_import import Slot, TemplatePlan


def _render_case(plans: list[TemplatePlan]) -> tuple[str, list[Any]]:
    """SQL computing each row's `components` from q.vals, the same as `render_plan`."""
    sql = ["CASE q.template_id"]
    params: list[Any] = []
    for plan in plans:
        expr, expr_params = _plan_sql(plan)
        sql.append(f"WHEN %s THEN {expr}")
        params += [plan.template_id, *expr_params]
    sql.append("END")
    return " ".join(sql), params


def _plan_sql(plan: TemplatePlan) -> tuple[str, list[Any]]:
    components: list[str] = []
    params: list[Any] = []
    for component in plan.components:
        head = "jsonb_build_object('type', %s::text, "
        params.append(component.type)
        if component.sub_type is not None:
            head += "'sub_type', %s::text, 'index', %s::text, "
            params += [component.sub_type, component.index]
        parameters = []
        for slot in component.slots:
            sql, slot_params = _slot_sql(slot)
            parameters.append(sql)
            params += slot_params
        components.append(f"{head}'parameters', jsonb_build_array({', '.join(parameters)}))")
    if not components:
        return "'[]'::jsonb", []
    return f"jsonb_build_array({', '.join(components)})", params


def _slot_sql(slot: Slot) -> tuple[str, list[Any]]:
    value = "(q.vals ->> %s::text)"
    if slot.kind == "text" and slot.parameter_name is None:
        return f"jsonb_build_object('type', 'text', 'text', {value})", [slot.column]
    if slot.kind == "text":
        return (
            f"jsonb_build_object('type', 'text', 'text', {value}, 'parameter_name', %s::text)",
            [slot.column, slot.parameter_name],
        )
    if slot.kind == "coupon_code":
        return (
            f"jsonb_build_object('type', 'coupon_code', 'coupon_code', {value})",
            [slot.column],
        )
    # A media header: a link or an uploaded media id, as is_link() decides.
    return (
        f"jsonb_build_object('type', %s::text, %s::text, CASE WHEN lower({value}) "
        f"LIKE 'https://%%' OR lower({value}) LIKE 'http://%%' THEN "
        f"jsonb_build_object('link', {value}) ELSE jsonb_build_object('id', {value}) END)",
        [slot.kind, slot.kind, *[slot.column] * 4],
    )
