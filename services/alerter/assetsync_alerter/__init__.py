"""The alerter: task results, backups, lifecycle events and sink rejections become Feishu bot cards.

Modules, one concern each:
- service: bus wiring — durable consumers on the OPS stream feeding the policy, the bot sending cards
- policy: no storms — one alert per incident, reminders at an interval, one "recovered" when it clears
- cards: the interactive card of each alert kind (pure functions)
"""
