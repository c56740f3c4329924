//! Anti-windup for the SLO term: what the term last rose to during a burn, carried from
//! one evaluation to the next, so the term stops growing once growing has been tried
//! and did not help.
//!
//! The boost follows the fixable short burn (`1 + gain x (b - 1)`, capped at
//! `max_boost`). Left alone, a burn that more replicas do not lower (misses the split
//! could not tell apart, a fleet bound elsewhere) keeps the boost at its cap for as
//! long as it burns. So each rise is remembered with the burn that caused it, and
//! judged once the fleet has served it: when the fleet has run at least the replicas
//! asked for over one short window and the fixable burn never fell below the burn of
//! the rise, the rise did not help, and the boost is held there until the burn stops.
//! A rise not yet served (its replicas are still loading) or one that lowered the burn
//! leaves the next rise free. Lower boosts always pass: the term falls with the burn,
//! and ends with it.
//!
//! While the fleet serves under three quarters of the replicas the load asks for (a
//! burst whose replicas are still starting), the misses are the shortfall's: the load
//! terms already ask for the replicas that end them, and a boost on top would only
//! arrive after the burst, one cold start later, and be held through the HPA's
//! scale-down window. The boost waits (1) until the fleet has caught up.
//!
//! A boost that follows the burn alone needs the burn to stay: where the capacity
//! numbers overstate what a replica holds for the traffic at hand (a length mix they
//! were not measured on), the fleet settles where the SLO still misses, since a met SLO
//! takes the boost away. So a rise the fleet served for a short window that lowered the
//! burn without ending it is kept as the **trim**: the burn's boost multiplies it from
//! then on, and when the burn ends the trim stays, decaying toward 1 with a half-life
//! while the SLO holds with room (the short fixable burn under half the threshold). The
//! trim and the burn's boost together never ask more than `max_boost` times the load.

use chrono::{DateTime, Utc};

/// The last rise of one SLO's boost during the burn in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Rise {
    /// The SLO it belongs to.
    pub slo: String,
    /// The boost the term rose to.
    pub boost: f64,
    /// The fixable short-window burn that asked for it.
    pub fixable_burn: f64,
    /// The replicas the term asked for then (clamped to max_demand).
    pub replicas: f64,
    /// When the term rose.
    pub at: DateTime<Utc>,
    /// The last evaluation that carried it. One unseen for [`FORGET_AFTER_S`] is
    /// forgotten: the burn may have ended unseen (calls that went to another scaler
    /// replica, or none at all).
    pub seen_at: DateTime<Utc>,
    /// When the fleet first ran that many replicas, within the HPA's 10 % tolerance.
    pub served_at: Option<DateTime<Utc>>,
    /// The lowest fixable short burn read once the fleet had served the rise for a
    /// short window: the burn of requests the larger fleet served.
    pub lowest_burn_after: Option<f64>,
    /// The trim: the boost of the last rise the fleet served for a short window that
    /// lowered the burn without ending it (1 where none has). The burn's boost
    /// multiplies it; it stays when the burn ends, decaying while the SLO holds with
    /// room.
    pub trim: f64,
}

/// What the controller did with one SLO's boost at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Control {
    /// The SLO is not burning (or was not read): no term, nothing remembered.
    Idle,
    /// The boost follows the burn at or below the last rise.
    Follow,
    /// The boost rose above the last rise (or this is the burn's first ask).
    Rise,
    /// The boost is held at the last rise: the fleet served it for a short window and
    /// the fixable burn did not fall below the burn that asked for it.
    Hold,
    /// No boost beyond the trim: the fleet serves under three quarters of the replicas
    /// the load asks (the rest are still starting, or the HPA has not added them yet),
    /// so the misses are the shortfall's, which the load terms already ask to fill.
    Shortfall,
    /// Not burning: the trim kept from the burn before stands, decaying while the SLO
    /// holds with room.
    Sustain,
}

impl Control {
    /// The name shown in Explain and used as a metric label.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One evaluation's reading of a burning SLO, as the controller needs it.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// When the signals were observed; `None` leaves the boost unremembered.
    pub now: Option<DateTime<Utc>>,
    /// R: replicas serving now.
    pub fleet: f64,
    /// L: the load-based demand the boost multiplies.
    pub load: f64,
    /// The fixable short-window burn.
    pub fixable_burn: f64,
    /// The boost the burn asks for now.
    pub boost: f64,
    /// The SLO's `max_boost`: the trim and the burn's boost together ask at most this.
    pub max_boost: f64,
    /// The trim's half-life in seconds; 0 keeps no trim.
    pub trim_half_life_s: f64,
    /// The SLO's short window, in seconds: how long a rise must be served to be judged.
    pub short_window_s: f64,
    /// The highest demand answered: a rise past it is served at it.
    pub max_demand: f64,
}

/// The controller's answer for one burning SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The boost in force.
    pub boost: f64,
    /// What the controller did.
    pub control: Control,
    /// What to remember for the next evaluation.
    pub rise: Option<Rise>,
    /// Why, in words, for Explain.
    pub reason: String,
}

/// KEDA asks every 15 to 30 s; four polls missed and the rise is forgotten.
pub const FORGET_AFTER_S: f64 = 120.0;

/// The HPA leaves a fleet alone within 10 % of its target, so a fleet within that of
/// the ask (or within one replica) is taken as serving it.
const HPA_TOLERANCE: f64 = 0.1;

/// Decides one burning SLO's boost from its last rise.
pub fn decide(slo: &str, last: Option<&Rise>, step: &Step) -> Decision {
    let Some(now) = step.now else {
        return Decision {
            boost: step.boost,
            control: Control::Rise,
            rise: None,
            reason: "no observation time: the boost follows the burn, unremembered".to_owned(),
        };
    };
    let last = last.filter(|r| fresh(r, slo, now));
    // A trim kept before the half-life was set to 0 (a reloaded config) is dropped.
    let trim = last
        .filter(|_| step.trim_half_life_s > 0.0)
        .map_or(1.0, |r| r.trim);
    if short_of_load(step.fleet, step.load) {
        return Decision {
            boost: trim,
            control: Control::Shortfall,
            // The burn's last rise stays remembered for when the fleet has caught up.
            rise: last.map(|r| Rise {
                seen_at: now,
                ..r.clone()
            }),
            reason: format!(
                "no boost: the fleet serves {:.0} of the {:.1} replicas the load asks, so the misses are the shortfall's, which the load terms already ask to fill",
                step.fleet, step.load
            ),
        };
    }
    let Some(last) = last else {
        return rise(slo, step, now, trim, "the burn's first ask".to_owned());
    };
    let last = judged(last, step, now);
    match last.lowest_burn_after {
        // Served for a short window, the burn lower but not ended: that boost was not
        // enough, and it is kept under the next.
        Some(lowest) if lowest < last.fixable_burn && step.trim_half_life_s > 0.0 => {
            let trim = trim.max(last.boost);
            let boost = (trim * step.boost).min(step.max_boost);
            if boost <= last.boost {
                return follow(Rise { trim, ..last }, boost);
            }
            rise(
                slo,
                step,
                now,
                trim,
                format!(
                    "the last rise lowered the fixable burn from {:.3} to {lowest:.3} without ending it: its boost {:.3} is kept under the next",
                    last.fixable_burn, last.boost
                ),
            )
        }
        Some(lowest) if lowest >= last.fixable_burn => {
            let boost = (trim * step.boost).min(step.max_boost);
            if boost <= last.boost {
                return follow(last, boost);
            }
            Decision {
                boost: last.boost,
                control: Control::Hold,
                reason: format!(
                    "held at {:.3} (the burn asks {:.3}): the fleet has served the last rise's {:.1} replicas for a short window and the fixable burn did not fall below the {:.3} that asked for it (lowest since: {lowest:.3})",
                    last.boost, boost, last.replicas, last.fixable_burn
                ),
                rise: Some(last),
            }
        }
        _ => {
            let boost = (trim * step.boost).min(step.max_boost);
            if boost <= last.boost {
                return follow(last, boost);
            }
            let reason = format!(
                "the last rise ({:.1} replicas) has not been served for a short window yet",
                last.replicas
            );
            rise(slo, step, now, trim, reason)
        }
    }
}

/// The short fixable burn under which the SLO holds with room, as a share of the burn
/// threshold: there the trim decays; between it and the threshold the trim is held.
const ROOM: f64 = 0.5;

/// A trim left under this is over: the term ends.
const TRIM_END: f64 = 1.001;

/// One evaluation's reading of an SLO that does not burn, as the trim needs it.
#[derive(Debug, Clone, Copy)]
pub struct Calm {
    /// When the signals were observed.
    pub now: DateTime<Utc>,
    /// L: the load-based demand the trim multiplies.
    pub load: f64,
    /// The fixable short-window burn.
    pub fixable_burn: f64,
    /// The SLO's burn threshold.
    pub burn_threshold: f64,
    /// The trim's half-life in seconds; 0 keeps no trim.
    pub trim_half_life_s: f64,
}

/// The trim kept while the SLO does not burn: decayed toward 1 over the time since the
/// last evaluation while the SLO holds with room, held otherwise; `None` where no trim
/// is left (the term ends with the burn).
pub fn sustain(slo: &str, last: Option<&Rise>, calm: &Calm) -> Option<Decision> {
    let now = calm.now;
    let last = last.filter(|r| fresh(r, slo, now) && r.trim > TRIM_END)?;
    if calm.trim_half_life_s <= 0.0 {
        return None;
    }
    let roomy = calm.fixable_burn < ROOM * calm.burn_threshold;
    let trim = if roomy {
        let elapsed = (now - last.seen_at).as_seconds_f64();
        1.0 + (last.trim - 1.0) * 0.5f64.powf(elapsed / calm.trim_half_life_s)
    } else {
        last.trim
    };
    (trim > TRIM_END).then(|| Decision {
        boost: trim,
        control: Control::Sustain,
        reason: if roomy {
            format!(
                "not burning: the trim {trim:.3} from the last burn stands, decaying (the fixable burn {:.3} is under half the threshold)",
                calm.fixable_burn
            )
        } else {
            format!(
                "not burning: the trim {trim:.3} from the last burn stands, held (the fixable burn {:.3} is within half the threshold of it)",
                calm.fixable_burn
            )
        },
        // A burn that returns starts a new rise from the trim.
        rise: Some(Rise {
            slo: slo.to_owned(),
            boost: trim,
            fixable_burn: last.fixable_burn,
            replicas: calm.load * trim,
            at: last.at,
            seen_at: now,
            served_at: None,
            lowest_burn_after: None,
            trim,
        }),
    })
}

fn fresh(r: &Rise, slo: &str, now: DateTime<Utc>) -> bool {
    r.slo == slo
        && r.at <= now
        && r.seen_at <= now
        && (now - r.seen_at).as_seconds_f64() <= FORGET_AFTER_S
}

fn follow(last: Rise, boost: f64) -> Decision {
    Decision {
        boost,
        control: Control::Follow,
        reason: format!(
            "the burn asks a boost of {boost:.3}, at or below the last rise's {:.3}",
            last.boost
        ),
        rise: Some(last),
    }
}

fn rise(slo: &str, step: &Step, now: DateTime<Utc>, trim: f64, reason: String) -> Decision {
    let boost = (trim * step.boost).min(step.max_boost);
    let rise = Rise {
        slo: slo.to_owned(),
        boost,
        fixable_burn: step.fixable_burn,
        replicas: (step.load * boost).min(step.max_demand),
        at: now,
        seen_at: now,
        served_at: None,
        lowest_burn_after: None,
        trim,
    };
    Decision {
        boost,
        control: Control::Rise,
        rise: Some(served(rise, step, now)),
        reason,
    }
}

/// The rise with this evaluation's fleet and burn taken into account.
fn judged(last: &Rise, step: &Step, now: DateTime<Utc>) -> Rise {
    let mut rise = served(last.clone(), step, now);
    rise.seen_at = now;
    if let Some(served_at) = rise.served_at {
        let settled = (now - served_at).as_seconds_f64() >= step.short_window_s;
        if settled {
            let lowest = rise
                .lowest_burn_after
                .map_or(step.fixable_burn, |l| l.min(step.fixable_burn));
            rise.lowest_burn_after = Some(lowest);
        }
    }
    rise
}

/// The share of the load's replicas under which a fleet is catching up with a burst
/// rather than lagging a ramp: behind by a quarter or less is the ordinary lag of load
/// that grows over a cold start, and there the boost is what makes the lag up.
const SHORTFALL_SHARE: f64 = 0.75;

/// A fleet of `fleet` replicas is short of the load's `load` replicas: under
/// [`SHORTFALL_SHARE`] of them, and more than one replica short.
fn short_of_load(fleet: f64, load: f64) -> bool {
    fleet < load * SHORTFALL_SHARE && fleet + 1.0 < load
}

/// A fleet of `fleet` replicas serves an ask of `replicas`: within the HPA's tolerance
/// of it, or within one replica.
fn serves(fleet: f64, replicas: f64) -> bool {
    fleet * (1.0 + HPA_TOLERANCE) >= replicas || fleet + 1.0 > replicas
}

fn served(mut rise: Rise, step: &Step, now: DateTime<Utc>) -> Rise {
    if rise.served_at.is_none() && serves(step.fleet, rise.replicas) {
        rise.served_at = Some(now);
    }
    rise
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0)
    }

    /// A burning step without a trim: the tests of the rises and holds alone.
    fn step(seconds: i64, fleet: f64, burn: f64) -> Step {
        Step {
            trim_half_life_s: 0.0,
            ..trimmed(seconds, fleet, burn)
        }
    }

    /// A burning step with the default trim half-life.
    fn trimmed(seconds: i64, fleet: f64, burn: f64) -> Step {
        Step {
            now: at(seconds),
            fleet,
            load: 10.0,
            fixable_burn: burn,
            boost: (1.0 + 0.25 * (burn - 1.0)).min(2.0),
            max_boost: 2.0,
            trim_half_life_s: 1800.0,
            short_window_s: 300.0,
            max_demand: 100.0,
        }
    }

    /// Runs the controller over steps, carrying the rise, with KEDA's polls every 30 s
    /// in between reading what the step before read; returns the steps' decisions.
    fn decisions(steps: &[Step]) -> Vec<Decision> {
        let mut last: Option<Rise> = None;
        let mut out = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            if let Some(before) = i.checked_sub(1).map(|j| steps[j]) {
                let mut poll = before;
                poll.now = poll.now.map(|t| t + chrono::TimeDelta::seconds(30));
                while poll.now < s.now {
                    last = decide("ttft", last.as_ref(), &poll).rise;
                    poll.now = poll.now.map(|t| t + chrono::TimeDelta::seconds(30));
                }
            }
            let d = decide("ttft", last.as_ref(), s);
            last = d.rise.clone();
            out.push(d);
        }
        out
    }

    fn run(steps: &[Step]) -> Vec<(Control, f64)> {
        decisions(steps)
            .into_iter()
            .map(|d| (d.control, d.boost))
            .collect()
    }

    #[test]
    fn a_burn_that_does_not_fall_once_the_rise_is_served_stops_the_growth() {
        // Burn 3 asks 1.5 x 10 = 15; the fleet of 10 grows to 15 by 180 s. Over the
        // next short window the burn stays at 3 and then climbs to 5.
        let decisions = run(&[
            step(0, 10.0, 3.0),
            step(180, 15.0, 3.0),
            step(480, 15.0, 3.0),
            step(500, 15.0, 5.0),
            step(900, 15.0, 5.0),
        ]);
        assert_eq!(decisions[0], (Control::Rise, 1.5));
        assert_eq!(decisions[1], (Control::Follow, 1.5));
        assert_eq!(decisions[2], (Control::Follow, 1.5));
        // Burn 5 would ask 2: held at 1.5, the rise that did not help.
        assert_eq!(decisions[3], (Control::Hold, 1.5));
        assert_eq!(decisions[4], (Control::Hold, 1.5));
    }

    #[test]
    fn each_decision_says_why() {
        let d = decisions(&[
            step(0, 10.0, 3.0),
            step(60, 15.0, 3.0),
            step(400, 15.0, 5.0),
        ]);
        assert_eq!(d[0].reason, "the burn's first ask");
        assert_eq!(
            d[1].reason,
            "the burn asks a boost of 1.500, at or below the last rise's 1.500"
        );
        assert_eq!(
            d[2].reason,
            "held at 1.500 (the burn asks 2.000): the fleet has served the last rise's 15.0 replicas for a short window and the fixable burn did not fall below the 3.000 that asked for it (lowest since: 3.000)"
        );
    }

    #[test]
    fn a_rise_not_yet_served_leaves_the_next_one_free() {
        // The fleet is still at 10 (replicas loading) when the burn climbs: it may rise.
        let decisions = run(&[step(0, 10.0, 3.0), step(600, 10.0, 5.0)]);
        assert_eq!(decisions[1], (Control::Rise, 2.0));
        // Served, but not yet for a short window: still free.
        let decisions = run(&[
            step(0, 10.0, 3.0),
            step(60, 15.0, 3.0),
            step(300, 15.0, 5.0),
        ]);
        assert_eq!(decisions[2], (Control::Rise, 2.0));
    }

    #[test]
    fn a_rise_that_lowered_the_burn_leaves_the_next_one_free() {
        // Served at 60 s; at 400 s the burn is down to 2, then new load pushes it to 5.
        let decisions = run(&[
            step(0, 10.0, 3.0),
            step(60, 15.0, 3.0),
            step(400, 15.0, 2.0),
            step(500, 15.0, 5.0),
        ]);
        assert_eq!(decisions[2], (Control::Follow, 1.25));
        assert_eq!(decisions[3], (Control::Rise, 2.0));
    }

    #[test]
    fn a_fleet_catching_up_with_its_load_gets_no_boost_until_it_has() {
        // The load asks 10 and 7 serve (a burst's replicas still starting): no boost,
        // the misses are the shortfall's. The same burn with 8 serving (lagging by a
        // fifth, as under a ramp) rises.
        let controls = run(&[step(0, 7.0, 3.0), step(15, 8.0, 3.0)]);
        assert_eq!(controls[0], (Control::Shortfall, 1.0));
        assert_eq!(controls[1], (Control::Rise, 1.5));
        let d = decisions(&[step(0, 7.0, 3.0)]);
        assert_eq!(
            d[0].reason,
            "no boost: the fleet serves 7 of the 10.0 replicas the load asks, so the misses are the shortfall's, which the load terms already ask to fill"
        );
        // A rise made before the shortfall is remembered through it, and judged after.
        let controls = run(&[
            step(0, 10.0, 3.0),
            step(30, 6.0, 3.0),
            step(60, 15.0, 3.0),
            step(400, 15.0, 5.0),
        ]);
        assert_eq!(controls[1], (Control::Shortfall, 1.0));
        assert_eq!(controls[3], (Control::Hold, 1.5));
        // One replica short is never a shortfall, however small the fleet.
        let mut small = step(0, 1.0, 3.0);
        small.load = 2.0;
        assert_eq!(run(&[small])[0].0, Control::Rise);
    }

    #[test]
    fn a_held_boost_still_falls_with_the_burn() {
        let decisions = run(&[
            step(0, 10.0, 3.0),
            step(60, 15.0, 3.0),
            step(400, 15.0, 5.0),
            step(420, 15.0, 1.8),
        ]);
        assert_eq!(decisions[2], (Control::Hold, 1.5));
        assert_eq!(decisions[3], (Control::Follow, 1.2));
    }

    #[test]
    fn a_fleet_within_the_hpa_tolerance_serves_the_ask() {
        // Asked 20 (capped at max_demand 20 from 30): 19 replicas are within 10 %.
        let mut first = step(0, 12.0, 9.0);
        first.load = 15.0;
        first.max_demand = 20.0;
        let d = decide("ttft", None, &first);
        assert_eq!(d.rise.as_ref().map(|r| r.replicas), Some(20.0));
        let mut later = first;
        later.now = at(60);
        later.fleet = 19.0;
        let d = decide("ttft", d.rise.as_ref(), &later);
        assert_eq!(d.rise.and_then(|r| r.served_at), at(60));
    }

    #[test]
    fn without_a_clock_nothing_is_remembered() {
        let mut s = step(0, 10.0, 3.0);
        s.now = None;
        let d = decide("ttft", None, &s);
        assert_eq!((d.control, d.boost, d.rise), (Control::Rise, 1.5, None));
        assert!(d.reason.contains("no observation time"), "{}", d.reason);
    }

    #[test]
    fn a_rise_no_evaluation_carried_for_a_short_window_is_forgotten() {
        // Served and judged unhelpful, then unseen for 3 minutes (the calls went to
        // another scaler replica, where the burn may have ended): the next burn is free.
        let d = decisions(&[
            step(0, 10.0, 3.0),
            step(60, 15.0, 3.0),
            step(400, 15.0, 3.0),
        ]);
        let next = decide("ttft", d[2].rise.as_ref(), &step(580, 15.0, 5.0));
        assert_eq!(next.control, Control::Rise);
        let soon = decide("ttft", d[2].rise.as_ref(), &step(500, 15.0, 5.0));
        assert_eq!(soon.control, Control::Hold);
    }

    #[test]
    fn a_rise_of_another_slo_is_not_read() {
        let first = decide("tpot", None, &step(0, 10.0, 3.0));
        let d = decide("ttft", first.rise.as_ref(), &step(60, 15.0, 5.0));
        assert_eq!(d.control, Control::Rise);
    }

    fn calm(seconds: i64, burn: f64) -> Calm {
        Calm {
            now: at(seconds).expect("a valid time"),
            load: 10.0,
            fixable_burn: burn,
            burn_threshold: 1.0,
            trim_half_life_s: 1800.0,
        }
    }

    /// The rise of burn 3 (1.5 x 10), served from 60 s, with the burn at 2 once it has
    /// been served for a short window: lowered, not ended.
    fn lowered_not_ended() -> Vec<Decision> {
        decisions(&[
            trimmed(0, 10.0, 3.0),
            trimmed(60, 15.0, 3.0),
            trimmed(400, 15.0, 2.0),
        ])
    }

    #[test]
    fn a_served_rise_that_lowered_the_burn_without_ending_it_is_kept_under_the_next() {
        let d = lowered_not_ended();
        // The burn of 2 asks 1.25 on its own; the 1.5 that got it there is kept under it.
        assert_eq!((d[2].control, d[2].boost), (Control::Rise, 1.5 * 1.25));
        let rise = d[2].rise.as_ref().expect("remembered");
        assert_eq!((rise.trim, rise.replicas), (1.5, 18.75));
        assert!(
            d[2].reason.contains("its boost 1.500 is kept"),
            "{}",
            d[2].reason
        );
        // Without a trim, the boost follows the burn down.
        let plain = run(&[
            step(0, 10.0, 3.0),
            step(60, 15.0, 3.0),
            step(400, 15.0, 2.0),
        ]);
        assert_eq!(plain[2], (Control::Follow, 1.25));
    }

    #[test]
    fn a_rise_that_did_not_lower_the_burn_is_not_kept() {
        // Served from 60 s, the burn of 3 never fell: held, and no trim comes of it.
        let d = decisions(&[
            trimmed(0, 10.0, 3.0),
            trimmed(60, 15.0, 3.0),
            trimmed(400, 15.0, 5.0),
        ]);
        assert_eq!((d[2].control, d[2].boost), (Control::Hold, 1.5));
        let rise = d[2].rise.clone();
        assert_eq!(rise.as_ref().map(|r| r.trim), Some(1.0));
        // The burn ends: nothing is kept, and the term ends with it.
        assert_eq!(sustain("ttft", rise.as_ref(), &calm(420, 0.0)), None);
    }

    #[test]
    fn the_trim_and_the_burns_boost_together_ask_at_most_max_boost() {
        // Burn 5 asks 2 on its own; the trim of 1.5 under it is capped at 2.
        let d = lowered_not_ended();
        let capped = decide("ttft", d[2].rise.as_ref(), &trimmed(420, 15.0, 5.0));
        assert_eq!(capped.boost, 2.0);
    }

    #[test]
    fn the_trim_outlasts_the_burn_and_decays_while_the_slo_holds_with_room() {
        let kept = lowered_not_ended()[2].rise.clone();
        // The burn ends at 430 s with the fleet's burn at 0: the trim stands and decays
        // by half every 30 minutes of calm, counted from the last evaluation (400 s).
        let decayed = |seconds: f64| 1.0 + 0.5 * 0.5f64.powf((seconds - 400.0) / 1800.0);
        let first = sustain("ttft", kept.as_ref(), &calm(430, 0.0)).expect("a trim");
        assert_eq!(first.control, Control::Sustain);
        assert!(
            (first.boost - decayed(430.0)).abs() < 1e-9,
            "{}",
            first.boost
        );
        let mut last = first.rise;
        let mut boost = first.boost;
        for seconds in (460..=430 + 1800).step_by(30) {
            let d = sustain("ttft", last.as_ref(), &calm(seconds, 0.2)).expect("a trim");
            (last, boost) = (d.rise, d.boost);
        }
        assert!((boost - decayed(2230.0)).abs() < 1e-9, "{boost}");
        // Within half the threshold of burning again, it is held.
        let held = sustain("ttft", last.as_ref(), &calm(430 + 1830, 0.7)).expect("a trim");
        assert_eq!(held.boost, boost);
        assert!(held.reason.contains("held"), "{}", held.reason);
        // A burn that returns rises from the trim: burn 3 asks 1.5 x 1.25.
        let again = decide("ttft", held.rise.as_ref(), &trimmed(430 + 1860, 15.0, 3.0));
        assert_eq!(again.control, Control::Rise);
        assert!((again.boost - 1.5 * boost).abs() < 1e-9, "{}", again.boost);
    }

    #[test]
    fn a_trim_decayed_to_nothing_ends_the_term_and_a_zero_half_life_keeps_none() {
        let kept = lowered_not_ended()[2].rise.clone();
        // Twelve hours unseen would forget it anyway; eleven half-lives of calm, polled,
        // bring it under the end.
        let mut last = kept;
        let mut seconds = 430;
        while let Some(d) = sustain("ttft", last.as_ref(), &calm(seconds, 0.0)) {
            last = d.rise;
            seconds += 30;
            assert!(seconds < 430 + 12 * 3600, "the trim never ended");
        }
        assert!(seconds > 430 + 5 * 1800, "ended after {seconds} s");
        let mut off = calm(430, 0.0);
        off.trim_half_life_s = 0.0;
        let kept = lowered_not_ended()[2].rise.clone();
        assert_eq!(sustain("ttft", kept.as_ref(), &off), None);
        // Set to 0 while a trim stands (a reloaded config): the burn's boost alone.
        let burning = decide("ttft", kept.as_ref(), &step(420, 15.0, 3.0));
        assert_eq!(burning.boost, 1.5);
    }

    #[test]
    fn a_fleet_short_of_its_load_keeps_the_trim_but_no_boost_over_it() {
        let kept = lowered_not_ended()[2].rise.clone();
        let d = decide("ttft", kept.as_ref(), &trimmed(420, 7.0, 3.0));
        assert_eq!((d.control, d.boost), (Control::Shortfall, 1.5));
    }
}
