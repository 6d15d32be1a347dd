"""The lint rules, one module each, registered here in the order they are documented."""
from __future__ import annotations

from types import ModuleType

from mauto.lint.rules import (
    contact_field,
    cron,
    duplicate_step_id,
    duplicate_workflow_id,
    duration,
    expression_name,
    expression_syntax,
    phone_region,
    reentry_without_wait,
    schema,
    secret_in_config,
    secret_in_workflow,
    serve_url,
    sms_length,
    split_weights,
    split_winner,
    start_cycle,
    start_target,
    template_missing,
    template_scope,
    template_syntax,
    time_of_day,
    timezone,
    unknown_event,
    unknown_event_property,
    unknown_segment,
    unreachable_step,
    unsubscribe_link,
    vars_undefined,
    version_not_bumped,
    wait_date_past,
    wait_for_target,
    wait_for_trigger_event,
    webhook_header,
    webhook_url,
    yaml_syntax,
)

RULES: dict[str, ModuleType] = {module.ID: module for module in (
    yaml_syntax, schema, duration, time_of_day, cron, timezone, phone_region,
    duplicate_workflow_id, duplicate_step_id,
    template_missing, template_syntax, template_scope, vars_undefined,
    expression_syntax, expression_name, contact_field, unknown_segment,
    split_weights, split_winner, wait_for_target, start_target, start_cycle, unreachable_step,
    unsubscribe_link, serve_url, sms_length, secret_in_config, secret_in_workflow, webhook_url, webhook_header,
    reentry_without_wait, wait_date_past, wait_for_trigger_event, unknown_event, unknown_event_property,
    version_not_bumped,
)}
