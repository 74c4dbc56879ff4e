"""Operations: alert rules, notifications, schedules, reports, the server loop and job hand-over."""
