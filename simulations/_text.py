"""Text templates for the sample data: ticket subjects, outage descriptions, survey comments.

Comments are assembled from pieces (opener, topic sentence per domain, optional detail,
closer) so that a few hundred thousand of them stay varied without a per-row template engine.
Tone follows the score and the topic follows the ticket's domain, which is what a text
analytics page needs to find something real.
"""

from __future__ import annotations

SUBJECTS: dict[str, tuple[str, ...]] = {
    "billing": (
        "Question about my bill",
        "Unexpected charge on invoice",
        "Refund request",
        "Payment not registered",
        "Double charged this month",
        "Direct debit failed",
        "Change billing address",
        "Promotional discount not applied",
        "Late payment fee dispute",
    ),
    "network": (
        "Connection keeps dropping",
        "No signal at home",
        "Very slow speeds in the evening",
        "High latency and packet loss",
        "Line disconnects several times a day",
        "Service unstable since last week",
        "Network unreachable from office",
    ),
    "internet": (
        "Internet not working",
        "Router keeps restarting",
        "Slow broadband speed",
        "Cannot connect to Wi-Fi",
        "Modem lights blinking red",
        "Wi-Fi does not reach upstairs",
        "Speed much lower than my plan",
        "New router setup help",
    ),
    "tv": (
        "TV channels missing",
        "Set-top box does not boot",
        "Picture freezing during live TV",
        "On-demand content not loading",
        "Remote control not pairing",
        "Recording failed",
        "Sports package not activated",
    ),
    "mobile": (
        "No mobile data",
        "SIM card not activated",
        "Roaming not working abroad",
        "Number porting request",
        "Calls keep dropping",
        "Voicemail not working",
        "eSIM activation problem",
    ),
    "account": (
        "Update contact details",
        "Password reset not received",
        "Cancel my contract",
        "Upgrade my plan",
        "Add a user to the account",
        "Move service to a new address",
        "Question about contract end date",
    ),
    "technical": (
        "Email account not syncing",
        "Static IP configuration",
        "Router firmware update failed",
        "Port forwarding help",
        "VPN not connecting over our line",
        "DNS resolution problems",
        "Smart home devices cannot connect",
    ),
}

OUTAGE_SUBJECTS: dict[str, tuple[str, ...]] = {
    "internet": (
        "Internet down",
        "No internet since this morning",
        "Total loss of broadband",
        "Is there an outage in my area?",
        "Internet down for the whole street",
    ),
    "network": (
        "Network outage in my area",
        "No service at all",
        "All connections down",
        "Complete loss of service",
    ),
    "tv": (
        "All TV channels down",
        "No TV signal",
        "TV service unavailable",
    ),
    "mobile": (
        "No mobile signal in the area",
        "Cannot make or receive calls",
        "Mobile network down",
    ),
}

TEST_SUBJECTS: tuple[str, ...] = (
    "TEST - ignore",
    "Test ticket please ignore",
    "[TEST] monitoring probe",
    "TEST - ignore (form check)",
)

# Outage domains with the service wording used in descriptions and their usual causes.
OUTAGE_SERVICE: dict[str, str] = {
    "internet": "internet",
    "network": "network",
    "tv": "TV",
    "mobile": "mobile",
}

OUTAGE_CAUSES: dict[str, tuple[str, ...]] = {
    "internet": (
        "Fibre cut",
        "Aggregation switch failure",
        "DNS resolver failure",
        "Power failure at exchange",
    ),
    "network": (
        "Core router fault",
        "Storm damage to lines",
        "Fibre cut",
        "Power failure at exchange",
    ),
    "tv": (
        "Headend equipment failure",
        "Satellite feed loss",
        "Video platform software fault",
    ),
    "mobile": (
        "Cell tower outage",
        "Radio network software fault",
        "Power failure at cell site",
    ),
}

# Tone index: 0 negative (csat 1-2), 1 neutral (3), 2 positive (4-5).
OPENERS: tuple[tuple[str, ...], ...] = (
    (
        "Very disappointed.",
        "Terrible experience.",
        "Not happy at all.",
        "Really frustrating.",
        "Worst support I have had.",
        "Unacceptable.",
        "",
    ),
    (
        "It was okay.",
        "Average experience.",
        "Not bad, not great.",
        "Mixed feelings.",
        "So-so.",
        "",
    ),
    (
        "Great service!",
        "Really happy with the support.",
        "Thanks a lot.",
        "Excellent experience.",
        "Very pleased.",
        "The agent was fantastic.",
        "",
    ),
)

TOPICS: dict[str, tuple[tuple[str, ...], ...]] = {
    "billing": (
        (
            "I was overcharged and it took ages to get a refund",
            "my bill is still wrong after several calls",
            "nobody could explain the extra charges on my invoice",
            "the refund I was promised never arrived",
        ),
        (
            "the billing issue was fixed but it took a while",
            "they corrected my invoice, though I had to explain it twice",
            "the refund came through eventually",
        ),
        (
            "the billing error was corrected quickly",
            "my refund was processed right away",
            "they explained the charges on my bill clearly",
            "the payment issue was sorted in minutes",
        ),
    ),
    "network": (
        (
            "my connection still drops every evening",
            "the network problem was never really fixed",
            "I was told to restart the router again and again",
            "the line is still unstable",
        ),
        (
            "the connection is more stable now but not perfect",
            "the network issue was fixed after a few tries",
            "the technician solved it, eventually",
        ),
        (
            "the connection has been rock solid since the fix",
            "they found the network fault immediately",
            "the technician fixed the line the same day",
            "my service is stable again",
        ),
    ),
    "internet": (
        (
            "my internet is still slow",
            "I had no internet for days",
            "the router problem keeps coming back",
            "the speed is nowhere near what I pay for",
        ),
        (
            "the internet works again but it took long",
            "the Wi-Fi is better now, mostly",
            "they replaced the router after some back and forth",
        ),
        (
            "my internet was back up in no time",
            "the new router works perfectly",
            "they sorted out the Wi-Fi quickly",
            "speeds are great now",
        ),
    ),
    "tv": (
        (
            "my TV channels are still missing",
            "the set-top box still does not work",
            "I missed the game because of the TV outage",
            "the picture keeps freezing",
        ),
        (
            "the TV works again, after a long wait",
            "the channels came back but the box is slow",
            "the replacement box took a while to arrive",
        ),
        (
            "my TV channels were restored quickly",
            "the new set-top box works great",
            "they fixed the TV service while I was on the phone",
            "on-demand works perfectly again",
        ),
    ),
    "mobile": (
        (
            "I still have no mobile data",
            "my number port failed twice",
            "calls keep dropping and nobody helps",
            "the SIM activation took forever",
        ),
        (
            "mobile data works now but it took some time",
            "the SIM was activated after a second call",
            "roaming works, though the explanation was confusing",
        ),
        (
            "my SIM was activated in minutes",
            "mobile data works perfectly again",
            "the number port went smoothly",
            "they fixed roaming right away",
        ),
    ),
    "account": (
        (
            "cancelling my contract was a nightmare",
            "my details are still not updated",
            "I never received the password reset",
            "the plan change was done wrong",
        ),
        (
            "my account was updated, eventually",
            "the plan change worked but took a few days",
            "the move to my new address was okay",
        ),
        (
            "my account was updated straight away",
            "the plan upgrade was quick and easy",
            "moving my service was effortless",
            "the password reset worked immediately",
        ),
    ),
    "technical": (
        (
            "the technical issue is still not solved",
            "nobody understood my configuration problem",
            "I was passed between three departments",
            "the firmware update broke everything",
        ),
        (
            "the technical problem got solved after escalation",
            "the configuration works now, more or less",
            "it took a specialist to fix it",
        ),
        (
            "the technician really knew what he was doing",
            "my configuration issue was solved expertly",
            "they fixed the technical problem on the first call",
            "clear and competent technical help",
        ),
    ),
}

# Extra sentences for facts the customer would mention (slow or reopened tickets).
SLOW_DETAILS: tuple[str, ...] = (
    "It took far too long.",
    "I waited days for an answer.",
    "The response time was very slow.",
    "Way too slow.",
)
REOPEN_DETAILS: tuple[str, ...] = (
    "The problem came back after it was marked as fixed.",
    "I had to contact you again because it was not really solved.",
    "It was closed before the issue was resolved.",
)
FAST_DETAILS: tuple[str, ...] = (
    "Fast response.",
    "Quick and friendly.",
    "Solved on the first contact.",
)

CLOSERS: tuple[tuple[str, ...], ...] = (
    (
        "Considering switching providers.",
        "Please improve your response times.",
        "I expect better.",
        "",
        "",
    ),
    (
        "Could be faster.",
        "Hope it stays fixed.",
        "",
        "",
    ),
    (
        "Keep it up!",
        "Thank you!",
        "Will recommend.",
        "",
        "",
    ),
)
