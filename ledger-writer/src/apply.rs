//! Applying one decoded `ledger.input` record to a customer's in-memory ledger: the pure heart of
//! the writer shell. No IO and no wall clock: what the store knows is asked through [`Known`]
//! (the writer fetches it before calling [`apply`]), and the documents to write are collected in
//! [`Postings`], in key order, so the same inputs always produce the same bytes (architecture
//! invariant 5).
//!
//! Rules (`semantics.md` §2-§4, §7, and `docs/ledger.md`):
//! - An input below the customer's `applied_offset` was applied before: it changes nothing.
//! - The writer's clock is `max(accepted_at, state.clock)`: it never goes back.
//! - Before an input, every account is touched at `now`: expired grants are written off (one
//!   `expiry` transaction each) and debt is repaid from grants that became effective.
//! - An input posts all of its transactions or none: it is applied to a copy of the customer's
//!   state, which replaces the state only if every posting succeeded. A refused posting (e.g. an
//!   amount out of range) posts nothing for that input, but the input still counts as applied.
//! - Usage events are posted once per (customer, event id); adjustments and charges once per
//!   (customer, `transaction_id`): a replay posts nothing.

use crate::posting::{Account, Line, NewGrant, PostingError, Purpose};
use crate::state::LedgerState;
use chrono::Months;
use rater::{PeriodKey, Rating, RatingContext, Subscribed};
use schemas::catalog::{Asset, Product};
use schemas::currency::is_iso_currency;
use schemas::customer::WalletAccount;
use schemas::ledger::{
    AdjustmentCommand, ChargeCommand, DomainEvent, LedgerInput, PostingLine, RatedEvent, RatedUsage,
    StoredEvent, TickCommand, Transaction, TransactionType,
};
use schemas::usage::{EventFee, UsageEvent};
use schemas::{Decimal, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// The currency revenue is reported in (`semantics.md` §7).
pub const REPORT_CURRENCY: &str = "USD";

/// What applying an input needs to know beyond the customer's state. The writer answers from
/// what it fetched from the store for this batch; documents posted earlier in the same batch are
/// in [`Postings`] and [`apply`] looks there itself.
pub trait Known {
    /// The event stored under `key` (`StoredEvent::key`), if it was posted before.
    fn posted_event(&self, key: &str) -> Option<&UsageEvent>;
    /// Whether a transaction is stored under `key` ([`transaction_key`]).
    fn transaction_exists(&self, key: &str) -> bool;
    /// A product document by id (for re-rating events that need the customer's state).
    fn product(&self, id: &str) -> Option<&Product>;
    /// A custom asset by code (for the revenue basis of a grant).
    fn asset(&self, code: &str) -> Option<&Asset>;
}

/// Everything a batch of inputs posts, plus counts for the metrics. Maps are keyed by store key,
/// so the write order is deterministic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Postings {
    /// Customers whose ledger document must be written.
    pub customers: BTreeSet<String>,
    /// New transactions by [`transaction_key`].
    pub transactions: BTreeMap<String, Transaction>,
    /// New events by `StoredEvent::key`.
    pub events: BTreeMap<String, StoredEvent>,
    /// Inputs applied (not skipped as already applied).
    pub inputs_applied: u64,
    /// Usage events skipped because the same (customer, event id) was posted before.
    pub duplicate_events: u64,
    /// Duplicates whose event differed from the one posted first (the first wins).
    pub duplicate_conflicts: u64,
    /// `accepted_at` of every usage event posted, for the event-to-balance latency.
    pub usage_accepted_at: Vec<Timestamp>,
    /// Domain events with the offset of the input that recorded them, written in the same
    /// commit as the change (the shell keys them: `DomainEvent::key`).
    pub outbox: Vec<(u64, DomainEvent)>,
    /// Schedule entries answered by ticks of this batch (`Table::Schedule` keys).
    pub unscheduled: BTreeSet<String>,
    /// Domain events of the input being applied, by id (one per id).
    pub events_recorded: BTreeMap<String, DomainEvent>,
    /// Subscription renewals applied (for the metrics).
    pub renewals: u64,
}

/// What [`apply`] did with an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input is below the customer's applied offset: nothing changed.
    AlreadyApplied,
    /// The input's postings are in [`Postings`] and its effects in the state.
    Applied,
    /// A posting was refused: nothing was posted for the input, but it counts as applied.
    Refused(PostingError),
}

/// Applies the input at `offset` to `state` (the state of `input.customer_id()`), collecting the
/// documents it posts in `out`. The input is consumed: its events, fees and texts move into the
/// posted documents instead of being copied.
pub fn apply(
    state: &mut LedgerState,
    offset: u64,
    input: LedgerInput,
    known: &dyn Known,
    out: &mut Postings,
) -> Outcome {
    if offset < state.applied_offset {
        return Outcome::AlreadyApplied;
    }
    let accepted_at = input.accepted_at();
    let now = state.clock.map_or(accepted_at, |clock| clock.max(accepted_at));
    let mut draft = state.clone();
    let mut step = Step { draft: &mut draft, known, out: &*out, now, accepted_at, new: Postings::default() };
    let result = step.advance().and_then(|()| match input {
        LedgerInput::Usage(usage) => step.usage(usage),
        LedgerInput::Adjustment(cmd) => step.adjustment(cmd),
        LedgerInput::Charge(cmd) => step.charge(cmd),
        LedgerInput::Tick(tick) => step.tick(tick),
    });
    let new = step.new;
    let outcome = match result {
        Ok(()) => {
            *state = draft;
            out.transactions.extend(new.transactions);
            out.events.extend(new.events);
            out.duplicate_events += new.duplicate_events;
            out.duplicate_conflicts += new.duplicate_conflicts;
            out.usage_accepted_at.extend(new.usage_accepted_at);
            out.outbox.extend(new.events_recorded.into_values().map(|e| (offset, e)));
            out.unscheduled.extend(new.unscheduled);
            out.renewals += new.renewals;
            Outcome::Applied
        }
        Err(error) => {
            tracing::warn!(customer = %state.customer_id, offset, %error, "input refused: nothing posted");
            Outcome::Refused(error)
        }
    };
    state.clock = Some(now);
    state.applied_offset = offset + 1;
    out.customers.insert(state.customer_id.clone());
    out.inputs_applied += 1;
    outcome
}

/// The revenue recognised per unit of a new grant (`semantics.md` §7), fixed when the grant is
/// created: a currency with purpose paid or other: 1; a custom asset with purpose paid or other:
/// its USD rate valid at `effective_at` (0 when the asset or the rate is unknown); promotion and
/// bundled credit: 0.
pub fn revenue_basis(
    purpose: Purpose,
    asset: &str,
    effective_at: Timestamp,
    custom: Option<&Asset>,
) -> Decimal {
    match purpose {
        Purpose::Promotion | Purpose::Bundled => Decimal::ZERO,
        Purpose::Paid | Purpose::Other if is_iso_currency(asset) => Decimal::ONE,
        Purpose::Paid | Purpose::Other => custom
            .and_then(|a| a.rate_at(REPORT_CURRENCY, effective_at))
            .map_or(Decimal::ZERO, |r| r.rate.normalize()),
    }
}

/// The revenue a debit recognises: every slice taken from a grant at the grant's revenue basis,
/// plus the slices that went to debt at 1 on a currency account (0 on a custom asset).
pub fn debit_revenue(lines: &[Line], account: &Account, asset: &str) -> Result<Decimal, PostingError> {
    let mut revenue = Decimal::ZERO;
    for line in lines {
        let recognised = match line {
            Line::FromGrant { grant, amount } => {
                let basis =
                    account.grants.iter().find(|g| &g.id == grant).map_or(Decimal::ZERO, |g| g.revenue_basis);
                amount.checked_mul(basis).ok_or(PostingError::Overflow)?
            }
            Line::ToDebt { amount } if is_iso_currency(asset) => *amount,
            _ => Decimal::ZERO,
        };
        revenue = revenue.checked_add(recognised).ok_or(PostingError::Overflow)?;
    }
    Ok(revenue.normalize())
}

/// A posting line as stored with its transaction.
pub fn posting_line(line: &Line) -> PostingLine {
    let (kind, grant) = match line {
        Line::FromGrant { grant, .. } => ("from_grant", Some(grant.clone())),
        Line::ToDebt { .. } => ("to_debt", None),
        Line::RepaidDebt { grant, .. } => ("repaid_debt", Some(grant.clone())),
        Line::Expired { grant, .. } => ("expired", Some(grant.clone())),
        Line::RolledOver { grant, .. } => ("rolled_over", Some(grant.clone())),
    };
    PostingLine { kind: kind.to_string(), grant, amount: line.amount() }
}

/// The asset of an account id `{name}:{ASSET}`.
fn asset_of(account_id: &str) -> &str {
    WalletAccount::split_id(account_id).1
}

/// The account a wallet command names (`account_name` defaults to `default`).
fn account_of(name: Option<&str>, asset: &str) -> String {
    WalletAccount::account_id(name.unwrap_or(WalletAccount::DEFAULT_NAME), asset)
}

/// `-amount`, without a negative zero.
fn negated(amount: Decimal) -> Decimal {
    if amount.is_zero() {
        Decimal::ZERO
    } else {
        -amount
    }
}

#[path = "subscriptions.rs"]
mod subscriptions;

/// The rating context over a customer's ledger: tier counters and default-account balances.
struct StateContext<'s> {
    state: &'s LedgerState,
    now: Timestamp,
}

impl RatingContext for StateContext<'_> {
    fn cumulative(&self, price: &str, period: PeriodKey) -> Decimal {
        self.state
            .counters
            .get(&period.to_string())
            .and_then(|prices| prices.get(price))
            .copied()
            .unwrap_or_default()
    }

    fn available(&self, asset: &str) -> Option<Decimal> {
        self.state
            .accounts
            .get(&WalletAccount::account_id(WalletAccount::DEFAULT_NAME, asset))
            .and_then(|a| a.available(self.now))
    }
}

/// One input being applied to a draft of the customer's state.
struct Step<'a> {
    draft: &'a mut LedgerState,
    known: &'a dyn Known,
    /// The batch so far (read only: this input's postings go to `new` until it succeeds).
    out: &'a Postings,
    now: Timestamp,
    accepted_at: Timestamp,
    new: Postings,
}

impl Step<'_> {
    fn customer(&self) -> &str {
        &self.draft.customer_id
    }

    /// The store key of transaction `id` of this customer, if no transaction holds it yet (in
    /// this input, this batch or the store).
    fn free_key(&self, id: &str) -> Option<String> {
        let key = Transaction::key(self.customer(), id);
        let taken = self.new.transactions.contains_key(&key)
            || self.out.transactions.contains_key(&key)
            || self.known.transaction_exists(&key);
        (!taken).then_some(key)
    }

    /// Records a transaction under `key`, which [`Step::free_key`] gave for its id.
    fn record(&mut self, key: String, transaction: Transaction) {
        self.new.transactions.insert(key, transaction);
    }

    /// Records a transaction whose id was not checked before, unless the id is already taken
    /// (which only a client reusing one of the writer's id shapes as a `transaction_id` can
    /// cause): that is logged, never overwritten.
    fn post(&mut self, transaction: Transaction) {
        match self.free_key(&transaction.id) {
            Some(key) => self.record(key, transaction),
            None => tracing::error!(
                customer = %transaction.customer_id,
                transaction = %transaction.id,
                "transaction id already taken: the transaction document is not written"
            ),
        }
    }

    fn transaction(&self, id: &str, kind: TransactionType, account_id: &str, amount: Decimal) -> Transaction {
        Transaction {
            id: id.to_string(),
            kind,
            customer_id: self.customer().to_string(),
            account_id: account_id.to_string(),
            asset: asset_of(account_id).to_string(),
            amount,
            description: None,
            metadata: None,
            created_at: self.accepted_at,
            executed_at: self.now,
            lines: Vec::new(),
            event_id: None,
            body_hash: None,
            revenue: Decimal::ZERO,
        }
    }

    /// Time passed: applies everything due (see [`subscriptions`]), after taking the customer's
    /// subscriptions from the document the tick carries.
    fn tick(&mut self, tick: TickCommand) -> Result<(), PostingError> {
        if let Some(key) = tick.due_key {
            self.new.unscheduled.insert(key);
        }
        if let Some(snapshot) = tick.customer {
            self.adopt(snapshot)?;
            self.advance()?;
        }
        Ok(())
    }

    /// Writes off the grants that expired at or before `at`, on every account, in account order:
    /// one `expiry` transaction and one `grant.expired` event each.
    fn expire(&mut self, at: Timestamp) -> Result<(), PostingError> {
        let mut expiries = Vec::new();
        for (account_id, account) in &mut self.draft.accounts {
            for (purpose, line) in account.expire(at) {
                let Line::Expired { grant, amount } = &line else { continue };
                let Some(g) = account.grants.iter().find(|g| &g.id == grant) else { continue };
                let basis = if purpose == Purpose::Paid { g.revenue_basis } else { Decimal::ZERO };
                let revenue = amount.checked_mul(basis).ok_or(PostingError::Overflow)?.normalize();
                expiries.push((
                    account_id.clone(),
                    format!("exp_{grant}"),
                    *amount,
                    g.expires_at,
                    line,
                    revenue,
                ));
            }
        }
        for (account_id, id, amount, expired_at, line, revenue) in expiries {
            let mut t = self.transaction(&id, TransactionType::Expiry, &account_id, negated(amount));
            t.created_at = expired_at;
            t.lines = vec![posting_line(&line)];
            t.revenue = revenue;
            let data = serde_json::json!({
                "grant_id": t.lines[0].grant,
                "account_id": account_id,
                "amount": amount,
                "expired_at": expired_at,
            });
            self.event(&id, "grant.expired", expired_at, data);
            self.post(t);
        }
        Ok(())
    }

    /// Debits `amount` from an account (created if missing); returns the lines and the revenue.
    fn debit(
        &mut self,
        account_id: &str,
        amount: Decimal,
    ) -> Result<(Vec<PostingLine>, Decimal), PostingError> {
        self.debit_at(account_id, amount, self.now)
    }

    /// [`Step::debit`] with eligibility judged at `at` (a time-driven change's own moment).
    fn debit_at(
        &mut self,
        account_id: &str,
        amount: Decimal,
        at: Timestamp,
    ) -> Result<(Vec<PostingLine>, Decimal), PostingError> {
        let account = self.draft.accounts.entry(account_id.to_string()).or_default();
        let lines = account.debit(amount, at)?;
        let revenue = debit_revenue(&lines, account, asset_of(account_id))?;
        Ok((lines.iter().map(posting_line).collect(), revenue))
    }

    fn usage(&mut self, usage: RatedUsage) -> Result<(), PostingError> {
        for mut rated in usage.events {
            let key = StoredEvent::key(&rated.event.id, &usage.customer_id);
            let first = self
                .new
                .events
                .get(&key)
                .or_else(|| self.out.events.get(&key))
                .map(|e| &e.event)
                .or_else(|| self.known.posted_event(&key));
            if let Some(first) = first {
                self.new.duplicate_events += 1;
                if first != &rated.event {
                    self.new.duplicate_conflicts += 1;
                }
                continue;
            }
            let (fees, mut warnings) = self.fees_for(&mut rated)?;
            let mut posted = Vec::with_capacity(fees.len());
            let mut revenue = Decimal::ZERO;
            for fee in fees {
                let account_id = WalletAccount::account_id(WalletAccount::DEFAULT_NAME, &fee.fee.currency);
                // A usage event is never refused: a fee the account cannot hold within the
                // ledger bound is left uncharged, and the event says so.
                let fits = |a: &Account| a.debit_fits(fee.fee.amount, self.now);
                if !self.draft.accounts.get(&account_id).map_or_else(|| fits(&Account::new()), fits) {
                    warnings.push(format!(
                        "fee {} of {} {} was not charged: {}",
                        fee.id,
                        fee.fee.amount,
                        fee.fee.currency,
                        PostingError::Bound
                    ));
                    continue;
                }
                let Some(transaction_key) = self.free_key(&fee.id) else {
                    tracing::error!(customer = %usage.customer_id, fee = %fee.id, "fee id already taken: fee not posted");
                    continue;
                };
                let (lines, fee_revenue) = self.debit(&account_id, fee.fee.amount)?;
                revenue = revenue.checked_add(fee_revenue).ok_or(PostingError::Overflow)?;
                let mut t =
                    self.transaction(&fee.id, TransactionType::Fee, &account_id, negated(fee.fee.amount));
                t.lines = lines;
                t.event_id = Some(rated.event.id.clone());
                t.revenue = fee_revenue;
                self.record(transaction_key, t);
                posted.push(fee);
            }
            self.new.events.insert(
                key,
                StoredEvent {
                    customer_id: usage.customer_id.clone(),
                    customer_external_id: usage.customer_external_id.clone(),
                    event: rated.event,
                    created_at: usage.accepted_at,
                    fees: posted,
                    warnings,
                    revenue: revenue.normalize(),
                },
            );
            self.new.usage_accepted_at.push(usage.accepted_at);
        }
        Ok(())
    }

    /// The event's fees and warnings (taken out of `rated`). An event whose rating read customer
    /// state is rated again here, against the customer's counters and balances, and its counters
    /// advance; if a pinned product version cannot be found, the rater's fees are posted as they
    /// are.
    fn fees_for(&mut self, rated: &mut RatedEvent) -> Result<(Vec<EventFee>, Vec<String>), PostingError> {
        let raters =
            |rated: &mut RatedEvent| (std::mem::take(&mut rated.fees), std::mem::take(&mut rated.warnings));
        if !rated.needs_state {
            return Ok(raters(rated));
        }
        let known = self.known;
        let mut subscribed = Vec::with_capacity(rated.products.len());
        for sp in &rated.products {
            let Some((product, version)) =
                known.product(sp.id.as_str()).and_then(|p| p.version(sp.version).map(|v| (p, v)))
            else {
                tracing::error!(
                    customer = %self.draft.customer_id,
                    event = %rated.event.id,
                    product = %sp.id,
                    version = sp.version,
                    "cannot rate again: the pinned product version is unknown; posting the rater's fees"
                );
                return Ok(raters(rated));
            };
            subscribed.push(Subscribed {
                product_id: product.id.as_str(),
                product_code: &product.code,
                version,
            });
        }
        let mut rating = Rating::default();
        rater::rate(
            &rated.event,
            &subscribed,
            &StateContext { state: &*self.draft, now: self.now },
            &mut rating,
        );
        let fees = rating.fees.iter().map(|f| f.to_event_fee(&rated.event)).collect();
        for delta in &rating.counters {
            let counter = self
                .draft
                .counters
                .entry(delta.period.to_string())
                .or_default()
                .entry(delta.price_id.to_string())
                .or_default();
            *counter = counter.checked_add(delta.quantity).ok_or(PostingError::Overflow)?;
        }
        for deferred in &rating.deferred {
            let dimensions = deferred.dimensions.map(|d| serde_json::to_string(d).unwrap_or_default());
            let tally = self
                .draft
                .postpaid
                .entry(deferred.price_id.to_string())
                .or_default()
                .entry(dimensions.unwrap_or_default())
                .or_default();
            tally.events = tally.events.checked_add(Decimal::ONE).ok_or(PostingError::Overflow)?;
            tally.volume = tally.volume.checked_add(deferred.volume).ok_or(PostingError::Overflow)?;
        }
        Ok((fees, rating.warnings))
    }

    fn adjustment(&mut self, cmd: AdjustmentCommand) -> Result<(), PostingError> {
        let req = cmd.request;
        let Some(key) = self.free_key(&req.transaction_id) else {
            // A replay: the API compares body hashes and answers replay or 409.
            return Ok(());
        };
        let account_id = account_of(req.account_name.as_deref(), &req.asset);
        let now = self.now;
        let lines: Vec<PostingLine> = if req.amount > Decimal::ZERO {
            let effective_at = req.effective_at.unwrap_or(now);
            let expires_at = match req.expires_at {
                Some(at) => at,
                None => effective_at.checked_add_months(Months::new(12)).ok_or(PostingError::Overflow)?,
            };
            let purpose = req.reason.purpose();
            let grant = NewGrant {
                id: format!("grant_{}", req.transaction_id),
                purpose,
                amount: req.amount,
                effective_at,
                expires_at,
                priority: None,
                revenue_basis: revenue_basis(purpose, &req.asset, effective_at, self.known.asset(&req.asset)),
                source: req.transaction_id.clone(),
            };
            let credit =
                PostingLine { kind: "credit".to_string(), grant: Some(grant.id.clone()), amount: req.amount };
            let account = self.draft.accounts.entry(account_id.clone()).or_default();
            let repaid = account.credit(grant, now)?;
            std::iter::once(credit).chain(repaid.iter().map(posting_line)).collect()
        } else if req.amount < Decimal::ZERO {
            self.debit(&account_id, -req.amount)?.0
        } else {
            Vec::new()
        };
        let mut t =
            self.transaction(&req.transaction_id, TransactionType::Adjustment, &account_id, req.amount);
        t.lines = lines;
        t.body_hash = Some(cmd.body_hash);
        t.description = req.description;
        t.metadata = req.metadata;
        self.record(key, t);
        Ok(())
    }

    fn charge(&mut self, cmd: ChargeCommand) -> Result<(), PostingError> {
        let req = cmd.request;
        let Some(key) = self.free_key(&req.transaction_id) else {
            return Ok(());
        };
        let account_id = account_of(req.account_name.as_deref(), &req.asset);
        let (lines, revenue) = self.debit(&account_id, req.amount)?;
        let mut t =
            self.transaction(&req.transaction_id, TransactionType::Fee, &account_id, negated(req.amount));
        t.lines = lines;
        t.body_hash = Some(cmd.body_hash);
        t.description = req.description;
        t.metadata = req.metadata;
        t.revenue = revenue;
        self.record(key, t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use schemas::catalog::{AssetExchangeRate, AssetRates, RateBasis};
    use schemas::ledger::AdjustmentReason;
    use serde_json::json;
    use std::collections::{HashMap, HashSet};

    /// What the store knows, in memory.
    #[derive(Default)]
    struct Mem {
        events: HashMap<String, UsageEvent>,
        transactions: HashSet<String>,
        products: HashMap<String, Product>,
        assets: HashMap<String, Asset>,
    }

    impl Known for Mem {
        fn posted_event(&self, key: &str) -> Option<&UsageEvent> {
            self.events.get(key)
        }
        fn transaction_exists(&self, key: &str) -> bool {
            self.transactions.contains(key)
        }
        fn product(&self, id: &str) -> Option<&Product> {
            self.products.get(id)
        }
        fn asset(&self, code: &str) -> Option<&Asset> {
            self.assets.get(code)
        }
    }

    const C: &str = "cust_1";

    /// Applies `inputs` at offsets 0, 1, ... to a fresh customer.
    fn run(known: &Mem, inputs: &[LedgerInput]) -> (LedgerState, Postings, Vec<Outcome>) {
        let mut state = LedgerState::new(C);
        let mut out = Postings::default();
        let outcomes = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| apply(&mut state, i as u64, input.clone(), known, &mut out))
            .collect();
        (state, out, outcomes)
    }

    fn adj(id: &str, amount: &str, reason: AdjustmentReason, accepted_at: &str) -> LedgerInput {
        LedgerInput::Adjustment(adjustment(C, id, amount, reason, accepted_at))
    }

    fn tx<'p>(out: &'p Postings, id: &str) -> &'p Transaction {
        &out.transactions[&Transaction::key(C, id)]
    }

    fn credit_asset() -> Asset {
        Asset {
            code: "CREDIT".into(),
            name: "Credit".into(),
            precision: None,
            label: None,
            symbol: None,
            rates: vec![AssetRates {
                source: "USD".into(),
                schedule: vec![
                    AssetExchangeRate {
                        valid_from: at("2026-01-01T00:00:00Z"),
                        valid_to: Some(at("2026-06-01T00:00:00Z")),
                        rate: d("0.10"),
                        inverse_rate: d("10"),
                        basis: RateBasis::Rate,
                    },
                    AssetExchangeRate {
                        valid_from: at("2026-06-01T00:00:00Z"),
                        valid_to: None,
                        rate: d("0.20"),
                        inverse_rate: d("5"),
                        basis: RateBasis::Rate,
                    },
                ],
            }],
            created_at: at("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn a_grants_revenue_basis_is_fixed_by_its_purpose_and_asset() {
        let credit = credit_asset();
        let march = at("2026-03-01T00:00:00Z");
        assert_eq!(revenue_basis(Purpose::Paid, "USD", march, None), d("1"));
        assert_eq!(revenue_basis(Purpose::Other, "EUR", march, None), d("1"));
        assert_eq!(revenue_basis(Purpose::Promotion, "USD", march, None), d("0"));
        assert_eq!(revenue_basis(Purpose::Bundled, "USD", march, None), d("0"));
        assert_eq!(revenue_basis(Purpose::Paid, "CREDIT", march, Some(&credit)), d("0.1"));
        // The rate valid at the grant's effective_at, not at another time.
        assert_eq!(
            revenue_basis(Purpose::Paid, "CREDIT", at("2026-07-01T00:00:00Z"), Some(&credit)),
            d("0.2")
        );
        assert_eq!(revenue_basis(Purpose::Promotion, "CREDIT", march, Some(&credit)), d("0"));
        // Unknown asset, or no rate valid yet: nothing to recognise.
        assert_eq!(revenue_basis(Purpose::Paid, "CREDIT", march, None), d("0"));
        assert_eq!(revenue_basis(Purpose::Paid, "CREDIT", at("2025-01-01T00:00:00Z"), Some(&credit)), d("0"));
    }

    #[test]
    fn a_debit_recognises_its_grants_basis_and_fiat_debt_at_one() {
        let known = Mem::default();
        let (_, out, _) = run(
            &known,
            &[
                adj("gift", "2", AdjustmentReason::Gift, "2026-11-01T00:00:00Z"),
                adj("topup", "3", AdjustmentReason::ExternalTopup, "2026-11-01T00:00:00Z"),
                LedgerInput::Charge(charge(C, "ch", "7", "2026-11-02T00:00:00Z")),
            ],
        );
        let ch = tx(&out, "ch");
        // 2 promotion (0) + 3 paid (1 each) + 2 to debt on a currency account (1 each).
        assert_eq!(ch.revenue, d("5"));
        let kinds: Vec<_> = ch.lines.iter().map(|l| (l.kind.as_str(), l.amount)).collect();
        assert_eq!(kinds, [("from_grant", d("2")), ("from_grant", d("3")), ("to_debt", d("2"))]);
        assert_eq!((ch.amount, ch.kind), (d("-7"), TransactionType::Fee));
    }

    #[test]
    fn custom_asset_credit_is_recognised_at_its_usd_rate_and_its_debt_is_not() {
        let mut known = Mem::default();
        known.assets.insert("CREDIT".into(), credit_asset());
        let mut topup =
            adjustment(C, "topup", "100", AdjustmentReason::ExternalTopup, "2026-03-01T00:00:00Z");
        topup.request.asset = "CREDIT".into();
        let spend = usage(
            C,
            "2026-03-02T00:00:00Z",
            vec![rated(event("evt_1", json!({})), vec![fee("evt_1", "price_1", "CREDIT", "130")])],
        );
        let (state, out, _) = run(&known, &[LedgerInput::Adjustment(topup), spend]);
        let id = rater::fixtures::fee_id("evt_1", "price_1");
        // 100 credits at 0.10 USD; the 30 that went to debt recognise nothing.
        assert_eq!(tx(&out, &id).revenue, d("10"));
        assert_eq!(out.events[&StoredEvent::key("evt_1", C)].revenue, d("10"));
        assert_eq!(state.available("default:CREDIT", at("2026-03-02T00:00:00Z")), Some(d("-30")));
    }

    #[test]
    fn expired_paid_credit_is_breakage_revenue_and_expired_promotion_is_not() {
        let known = Mem::default();
        let mut gift = adjustment(C, "gift", "4", AdjustmentReason::Gift, "2026-01-01T00:00:00Z");
        gift.request.expires_at = Some(at("2026-02-01T00:00:00Z"));
        let mut paid = adjustment(C, "paid", "6", AdjustmentReason::ExternalTopup, "2026-01-01T00:00:00Z");
        paid.request.expires_at = Some(at("2026-02-01T00:00:00Z"));
        let later = LedgerInput::Charge(charge(C, "later", "1", "2026-03-01T00:00:00Z"));
        let (state, out, _) =
            run(&known, &[LedgerInput::Adjustment(gift), LedgerInput::Adjustment(paid), later]);
        let (gift_exp, paid_exp) = (tx(&out, "exp_grant_gift"), tx(&out, "exp_grant_paid"));
        assert_eq!(
            (gift_exp.kind, gift_exp.amount, gift_exp.revenue),
            (TransactionType::Expiry, d("-4"), d("0"))
        );
        assert_eq!((paid_exp.amount, paid_exp.revenue), (d("-6"), d("6")));
        assert_eq!(
            paid_exp.created_at,
            at("2026-02-01T00:00:00Z"),
            "an expiry is dated when the grant expired"
        );
        assert_eq!(paid_exp.executed_at, at("2026-03-01T00:00:00Z"));
        assert_eq!(paid_exp.lines[0].kind, "expired");
        // The charge after the expiry found no credit.
        assert_eq!(tx(&out, "later").lines[0].kind, "to_debt");
        assert_eq!(state.available("default:USD", at("2026-03-01T00:00:00Z")), Some(d("-1")));
    }

    #[test]
    fn an_input_below_the_applied_offset_changes_nothing() {
        let known = Mem::default();
        let mut state = LedgerState::new(C);
        let mut out = Postings::default();
        let input = adj("a", "5", AdjustmentReason::Gift, "2026-11-01T00:00:00Z");
        assert_eq!(apply(&mut state, 7, input.clone(), &known, &mut out), Outcome::Applied);
        let before = (state.clone(), out.clone());
        assert_eq!(apply(&mut state, 3, input, &known, &mut out), Outcome::AlreadyApplied);
        assert_eq!((state.clone(), out.clone()), before);
        assert_eq!(state.applied_offset, 8);
    }

    #[test]
    fn the_writers_clock_never_goes_back() {
        let known = Mem::default();
        let (state, out, _) = run(
            &known,
            &[
                adj("late", "5", AdjustmentReason::Gift, "2026-11-02T00:00:00Z"),
                adj("early", "5", AdjustmentReason::Gift, "2026-11-01T00:00:00Z"),
            ],
        );
        let early = tx(&out, "early");
        assert_eq!(early.created_at, at("2026-11-01T00:00:00Z"));
        assert_eq!(early.executed_at, at("2026-11-02T00:00:00Z"));
        assert_eq!(state.clock, Some(at("2026-11-02T00:00:00Z")));
        // The grant's default validity starts at the writer's clock and lasts 12 months.
        let grant = &state.accounts["default:USD"].grants[1];
        assert_eq!(
            (grant.effective_at, grant.expires_at),
            (at("2026-11-02T00:00:00Z"), at("2027-11-02T00:00:00Z"))
        );
    }

    #[test]
    fn a_refused_input_posts_nothing_but_counts_as_applied() {
        let known = Mem::default();
        let mut bad = adjustment(C, "bad", "5", AdjustmentReason::Gift, "2026-11-01T00:00:00Z");
        bad.request.effective_at = Some(at("2026-12-01T00:00:00Z"));
        bad.request.expires_at = Some(at("2026-11-15T00:00:00Z"));
        let negative_charge = LedgerInput::Charge(charge(C, "neg", "-1", "2026-11-01T00:00:00Z"));
        let (state, out, outcomes) = run(&known, &[LedgerInput::Adjustment(bad), negative_charge]);
        assert!(matches!(outcomes[0], Outcome::Refused(PostingError::EmptyValidity(_))));
        assert_eq!(outcomes[1], Outcome::Refused(PostingError::NegativeAmount));
        assert!(out.transactions.is_empty());
        assert!(state.accounts.is_empty());
        assert_eq!((state.applied_offset, out.inputs_applied), (2, 2));
    }

    #[test]
    fn an_event_repeated_in_one_request_or_already_stored_is_posted_once() {
        let mut known = Mem::default();
        let stored = event("evt_old", json!({"v": 1}));
        known.events.insert(StoredEvent::key("evt_old", C), stored);
        let e = |id: &str, v: i32| rated(event(id, json!({"v": v})), vec![fee(id, "price_1", "USD", "1")]);
        let input = usage(
            C,
            "2026-11-15T13:00:00Z",
            vec![e("evt_1", 1), e("evt_1", 2), e("evt_old", 1), e("evt_old", 9)],
        );
        let (state, out, _) = run(&known, &[input]);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.transactions.len(), 1);
        assert_eq!((out.duplicate_events, out.duplicate_conflicts), (3, 2));
        assert_eq!(state.available("default:USD", at("2026-11-15T13:00:00Z")), Some(d("-1")));
    }

    #[test]
    fn an_adjustment_replayed_in_the_same_batch_or_already_stored_posts_nothing() {
        let mut known = Mem::default();
        known.transactions.insert(Transaction::key(C, "stored"));
        let (state, out, outcomes) = run(
            &known,
            &[
                adj("t1", "5", AdjustmentReason::Gift, "2026-11-01T00:00:00Z"),
                adj("t1", "50", AdjustmentReason::Gift, "2026-11-01T00:00:00Z"),
                adj("stored", "7", AdjustmentReason::Gift, "2026-11-01T00:00:00Z"),
            ],
        );
        assert_eq!(outcomes, [Outcome::Applied, Outcome::Applied, Outcome::Applied]);
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(tx(&out, "t1").body_hash.as_deref(), Some("hash_t1_5"));
        assert_eq!(state.available("default:USD", at("2026-11-01T00:00:00Z")), Some(d("5")));
    }

    #[test]
    fn events_needing_state_are_rated_again_against_the_customers_tier_counter() {
        let mut known = Mem::default();
        known.products.insert("prod_g".into(), graduated_product("prod_g"));
        // The rater priced both at an empty counter (80 each); the writer knows better.
        let provisional = |id: &str| vec![fee(id, "price_1_0", "USD", "80")];
        let first = needs_state(event("evt_1", json!({"volume": 80})), "prod_g", provisional("evt_1"));
        let second = needs_state(event("evt_2", json!({"volume": 80})), "prod_g", provisional("evt_2"));
        let (state, out, _) = run(
            &known,
            &[usage(C, "2026-11-15T13:00:00Z", vec![first]), usage(C, "2026-11-15T13:00:01Z", vec![second])],
        );
        assert_eq!(tx(&out, &rater::fixtures::fee_id("evt_1", "price_1_0")).amount, d("-80"));
        // 20 more at 1, then 60 at 0.5.
        assert_eq!(tx(&out, &rater::fixtures::fee_id("evt_2", "price_1_0")).amount, d("-50"));
        assert_eq!(state.counters["lifetime"]["price_1_0"], d("160"));
        assert_eq!(out.events[&StoredEvent::key("evt_2", C)].fees[0].fee.amount, d("50"));
    }

    #[test]
    fn an_event_whose_product_is_unknown_keeps_the_raters_fees() {
        let known = Mem::default();
        let e = needs_state(
            event("evt_1", json!({"volume": 80})),
            "prod_gone",
            vec![fee("evt_1", "p", "USD", "3")],
        );
        let (state, out, _) = run(&known, &[usage(C, "2026-11-15T13:00:00Z", vec![e])]);
        assert_eq!(tx(&out, &rater::fixtures::fee_id("evt_1", "p")).amount, d("-3"));
        assert!(state.counters.is_empty());
    }
}
