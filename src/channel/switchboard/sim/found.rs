//! The schedules that found defects, as they were found (each with the settings it was found
//! with): replayed in every `cargo test`, whatever range of seeds CI searches.

use super::schedule::{freezes, run_all, run_with, Settings};

/// Seeds named in issue 18's notes whose schedule, as it was found, is not among those CI runs:
/// beyond the range it runs, or found without freezes before odd seeds froze (or with
/// `DCHAN_SIM_FREEZE=1`, when even). With whether they freeze. (A change to the order things
/// run in changes the schedule a seed makes: these are the seeds, not always the schedules.)
const FOUND: &[(u64, bool)] = &[
    (5, false),
    (1_830, true),
    (2_165, false),
    (83, false),
    (141, false),
    (395, false),
    (907, false),
    (8_212, true),
    (15_067, false),
    (23_276, true),
    (104_967, true),
    (184_707, true),
    (269_126, false),
    (298_533, true),
];

/// Seeds that found defects of the unnamed channels (issue 19), with them (and freezes as the
/// seed says): 3 (a sender decoded after its owner crashed targeted the departing peer, and
/// waited for ever), 423 (credit granted for no window, after a start-over, kept for ever
/// once the owner had left), and those of the session after (each named where it is fixed, in
/// `switchboard::unnamed` and the inbox): 599 (a closed receiver granted a node that had
/// asked before its own close), 3041 (an ended receiver answered nothing to a want), 835,
/// 4802, 10604 (a close waited for, or credit stayed out to, a node no longer a member), 581
/// and 15864 (an owner gone that no departure named), 1813 (a peer back from a start-over
/// released its new incarnation's channels), 5792 and 13848 (a sender decoded after its
/// channel closed there sent after the end), 229 (a receiver ending at its node's start-over
/// left a waiting node unanswered), 12377 (a link made for a node its links had let go of),
/// 576 (a close that did not reach an owner the node had no link to yet), 19041 (a lagging
/// registry took a channel of an owner's new incarnation for its old one's), 10540 (the
/// capacity check's slack for a leaving node), 37369 (an owner's forgetting of a node removed
/// while alive), 49188 (a channel made before its node saw its own admission, taken for an
/// unknown owner's), 58117 (a close sent on a link made from a registry not refreshed to),
/// 88033 (a close waited for a member of a registry not refreshed to, gone again since).
/// Once senders were decoded on any node, whatever it knew of the owner: 1155 (credit granted
/// to a node that left lately voided at once, its next message refused), 14026 (a channel made
/// before its node saw itself admitted: the model, now as a started `Node`), 33245 (the
/// capacity check's slack for a node removed while alive, named channel), 138301 (a reclaim
/// deferred on a window a start-over voided, never answered, named channel).
const FOUND_UNNAMED: &[u64] = &[
    3, 229, 423, 576, 581, 599, 835, 1155, 1813, 3041, 4802, 5792, 10540, 10604, 12377, 13848,
    14026, 15864, 19041, 33245, 37369, 49188, 58117, 88033, 138301,
];

/// Seeds that found defects of the reply handles (issue 19), with them, and with unnamed
/// channels or not (freezes as the seed says), each named where it is fixed: 8 (a request
/// dropped undelivered after the close, its asker never told: `router::discard`), 3677 (a claim
/// behind the credit that said its request was taken) and 156914 (an answer behind an `ack`),
/// both lost with a receiving node that died (`Outbox::take`), 57763 (an answer lost with the
/// link of a node that forgot its asker, removed while alive: `Replies::removed`), 59736 (a
/// handle passed on by a node other than the asker, its taker dead after the passing node read
/// its "taken" and before its claim reached the asker: claimed through the passing node too,
/// `Peers::held`); and those
/// that found errors of the model: 77302 (a leaving node's unnamed inboxes), 21652 (a handle
/// passed on, its taker dead before its claim arrived: counted as the README's window, now
/// required to resolve), 118683 (the capacity slack of a node removed while alive), 25339 (a node removed and let back in while
/// it started over did not go round again, as `Core::check_removed` does). And, with them
/// and without unnamed channels, a defect of the named channel its schedule reaches only with
/// reply handles (they change the schedule: without them it passes, so it is not in [`FOUND`]):
/// 235795 (a start-over made its new windows from a registry newer than the one it last
/// refreshed to: a receiver registered and dropped between the two kept a departed target for
/// ever, `Switchboard::settle`).
const FOUND_REPLIES: &[(u64, bool)] = &[
    (8, true),
    (25_339, true),
    (59_736, false),
    (3_677, true),
    (57_763, true),
    (77_302, true),
    (21_652, false),
    (118_683, false),
    (156_914, false),
    (235_795, false),
];

/// Seeds that found defects with senders dropped between their sends (`DCHAN_SIM_DROP_SENDERS=1`,
/// which changes every seed's schedule), with unnamed channels and reply handles (freezes as
/// the seed says), each named where it is fixed: 23557 (no sender dropped in it: a peer given
/// up on as it started over, for it was no longer a member, stayed unanswered, so the credit
/// its new receiver granted after its own return was dropped and its reclaim never answered,
/// `Switchboard::ask_rejoined`), 53672 (a want that came before its receiver's inbox was
/// dropped, and the node, whose sender was gone before the receiver's node saw it, was never
/// offered credit for what it re-routed, `Switchboard::want_early`), 114199 (credit a receiver
/// had granted a node before it saw the node leave was freed at once and granted to another
/// node, while the leaving node handed over on it: 2 held or out against capacity 1,
/// `Grants::forget`, `Registry::left_gracefully`), 108581 (found with that fix's first
/// version, which kept the credit of every node that left counted, a dead one's too: the
/// hand-over of a node that left meanwhile found no room and lost what it held), 4661 (odd: its
/// messages carry trace headers; a request dropped undelivered after the close was decoded from
/// its header's first byte, so its reply handle never told its asker, `router/discard.rs`),
/// 170215 (a node refreshed from one registry to a later one listing the same members, an
/// unnamed channel's owner admitted and removed in between: its senders there were never
/// closed, `Switchboard::refresh` counts membership changes too).
const FOUND_DROPS: &[u64] = &[4_661, 23_557, 53_672, 108_581, 114_199, 170_215];

/// Seeds that found defects with impatient leaves (`DCHAN_SIM_IMPATIENT=1`), with unnamed
/// channels, reply handles and dropped senders (freezes as the seed says), each named where it
/// is fixed: 4554 (a leaving node stopped once its receivers' hand-over was out, while its own
/// sender's message, given back by a receiving node that died meanwhile, was still to be
/// delivered elsewhere: lost, `Switchboard::hand_over`), 5043 (a send waiting for credit as its
/// node started leaving returned `Ok` after the hand-over had flushed what the node sent: lost
/// with it, `ChannelRoute::refuse_sends`), 38565 (a receiving node's leave, applied while the
/// hand-over waited for its peers' acknowledgements, gave a message back: lost as the node
/// stopped, `Switchboard::hand_over`), 163371 (a leaving node's want read between a receiver's
/// node applying its leave and refreshing past it: refused, never asked again, and what it
/// handed over lost, `Switchboard::want_of`), 121444 (credit granted to a dead node that had
/// asked before it died, its want answered again as a leaving node's: a receiver's whole
/// capacity out for 10 s, and another node's hand-over timed out waiting for it,
/// `Switchboard::refresh_members`), 123468 (two nodes leaving at once: the receiving one gave a
/// message of the sender, whose leave came first and which had stopped, back to it: lost,
/// `Departure`, `Switchboard::own_leave_applied`), 13439 (found with that fix's first version:
/// a message of a node whose leave came second was held as the receiving node's own and taken
/// there, while that node delivered it elsewhere too, `ErasedInbox::node_left`), 256364 (found
/// with the next: credit a receiver granted a leaving node after its last return stayed
/// counted out 10 s, and another leaving node's hand-over found no room, `Credits::handed_over`),
/// 86405 (found with that fix's first version: a release read while the hand-over gave its
/// credit back for good, after its loop, was re-routed as the node stopped: lost,
/// `Credits::reopen`), and, with impatient leaves the default, two found with versions of the
/// hand-over's loop a review asked for: 56072 (credit given back for good before a flush that
/// waited for a dead peer: a release read meanwhile had every grant go back,
/// `Switchboard::redeliver` reopens), 115779 (the same loop: a grant to a node that had
/// handed over and stopped, answering a want of before its leave, or a refresh's offer to it,
/// held a receiver's only room 10 s: the hand-over's last `Frame::Return` is marked, and the
/// receiver drops the node's wants, `Grants::handed_over`; that loop is now the one kept).
const FOUND_IMPATIENT: &[u64] =
    &[4_554, 5_043, 38_565, 163_371, 121_444, 123_468, 13_439, 256_364, 86_405, 56_072, 115_779];

/// Seeds that found defects with leaves written twice, as a leader's (`DCHAN_SIM_REWRITTEN_LEAVES`,
/// on by default), with everything else on: 49239 (a node whose leave came first had
/// deliveries not acknowledged at a receiving node leaving after it; told none of what that
/// node took in, it delivered again what that node held and delivered, `ErasedInbox::node_left`).
/// And, with the default settings: 79912 (found with unnamed channels refusing while their node
/// leaves: a grant on its way to a leaving node as its last return arrived stayed counted out
/// 10 s after the node stopped without reading it, and another leaving node's hand-over found
/// no room, `Grants::handed_over`), 61823 and 81018 (found with the acknowledgement written
/// last: a flush made frames of the claims queued, which then went behind the credit saying
/// their messages were taken; the node died leaving, the claim was lost, and the asker waited
/// for ever, `Outbox::flushed`).
const FOUND_REWRITTEN: &[u64] = &[49_239, 79_912, 61_823, 81_018];

/// Seeds that found defects with sends held between their credit and their push
/// (`DCHAN_SIM_HELD`, on by default), with the default settings: 115913 (a leaving node's held
/// re-route took its last unit of a receiver's credit, and its hand-over, finding none, asked;
/// the receiver read the want while that unit was out and dropped it, the node never asked
/// again, and another node got all the room: the hand-over timed out and its message was lost,
/// `Grants::want` keeps such a want until the credit is used), and 19410 (found with that fix:
/// a held send given up gave its unit back and woke no sender waiting for room there, and the
/// want kept for that node waited for the unit to be used, `ChannelRoute::undo` wakes them),
/// 228061 (a send held across its node's start-over pushed on the voided window after the
/// start-over had taken back what it delivers again: out on void credit, lost, and counted in
/// flight for ever; `Window::gone` is set by a void too), 204087 (a node paused, removed and let
/// back in refreshed past a sender's graceful leave and its own receiver's removal at once: the
/// receiver restarted first and released what the node that left had sent it, to that node,
/// which had said its last word; lost. The restart comes after the departures now), 3898 with
/// freezes (found with that change: a node that left was no longer among those a restarting
/// receiver released, and its message still on its way was dropped there as sent without
/// credit; `Grants::may_still_send`), 20436 with freezes (a leaving node answered a reclaim
/// with 0 after asking again, its unit used by a held re-route; the receiver dropped its want
/// with its books on that return, and the hand-over starved: `Switchboard::returned` keeps the
/// want of all but a last return). With whether they freeze.
const FOUND_HELD: &[(u64, bool)] = &[
    (115_913, true),
    (19_410, false),
    (228_061, true),
    (204_087, true),
    (3_898, true),
    (20_436, true),
];

#[test]
fn the_schedules_that_found_defects_deliver_every_message() {
    // (Everything on; impatient leaves, leaves written twice and held sends only for the seeds
    // found with them.)
    let found = FOUND_DROPS.iter().map(|s| (*s, freezes(*s), false, false, false));
    let found = found.chain(FOUND_IMPATIENT.iter().map(|s| (*s, freezes(*s), true, false, false)));
    let found = found.chain(FOUND_REWRITTEN.iter().map(|s| (*s, freezes(*s), true, true, false)));
    let found = found.chain(FOUND_HELD.iter().map(|(s, f)| (*s, *f, true, true, true)));
    for (seed, freezes, impatient, rewritten_leaves, held) in found {
        let replay = format!(
            "DCHAN_SIM_SEED={seed} DCHAN_SIM_FREEZE={} DCHAN_SIM_IMPATIENT={} DCHAN_SIM_REWRITTEN_LEAVES={} DCHAN_SIM_HELD={} cargo test --lib switchboard::sim",
            u8::from(freezes),
            u8::from(impatient),
            u8::from(rewritten_leaves),
            u8::from(held)
        );
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            let settings = Settings {
                freezes,
                unnamed: true,
                replies: true,
                drop_senders: true,
                impatient,
                rewritten_leaves,
                held,
            };
            run_all(seed, settings)
        });
    }
    for &(seed, unnamed) in FOUND_REPLIES {
        let replay = format!(
            "DCHAN_SIM_SEED={seed} DCHAN_SIM_UNNAMED={} cargo test --lib switchboard::sim",
            u8::from(unnamed)
        );
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            run_with(seed, freezes(seed), unnamed, true)
        });
    }
    for &seed in FOUND_UNNAMED {
        let replay = format!("DCHAN_SIM_SEED={seed} cargo test --lib switchboard::sim");
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            run_with(seed, freezes(seed), true, false)
        });
    }
    for &(seed, freezes) in FOUND {
        let replay = format!(
            "DCHAN_SIM_SEED={seed} DCHAN_SIM_FREEZE={} cargo test --lib switchboard::sim",
            u8::from(freezes)
        );
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            run_with(seed, freezes, false, false)
        });
    }
}
