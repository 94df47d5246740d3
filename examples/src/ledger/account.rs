//! The account aggregate: deposits and withdrawals as events, no overdraft.

use palisade::eventstore::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    Deposited { amount_cents: i64 },
    Withdrawn { amount_cents: i64 },
}

impl AccountEvent {
    pub fn amount_cents(&self) -> i64 {
        match self {
            AccountEvent::Deposited { amount_cents } | AccountEvent::Withdrawn { amount_cents } => {
                *amount_cents
            }
        }
    }

    /// What it does to the balance.
    pub fn delta(&self) -> i64 {
        match self {
            AccountEvent::Deposited { amount_cents } => *amount_cents,
            AccountEvent::Withdrawn { amount_cents } => -amount_cents,
        }
    }
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Deposited { .. } => "account.deposited",
            AccountEvent::Withdrawn { .. } => "account.withdrawn",
        }
    }
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Deposit(i64),
    Withdraw(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("amount_cents must be a positive integer")]
    InvalidAmount,
    #[error("insufficient funds: the balance is {balance_cents}, the withdrawal {requested_cents}")]
    InsufficientFunds {
        balance_cents: i64,
        requested_cents: i64,
    },
    #[error("the balance would overflow")]
    Overflow,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance_cents: i64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        self.balance_cents = self.balance_cents.saturating_add(event.delta());
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Deposit(n) | AccountCommand::Withdraw(n) if n <= 0 => {
                Err(AccountError::InvalidAmount)
            }
            AccountCommand::Deposit(n) => {
                self.balance_cents
                    .checked_add(n)
                    .ok_or(AccountError::Overflow)?;
                Ok(vec![AccountEvent::Deposited { amount_cents: n }])
            }
            AccountCommand::Withdraw(n) if n > self.balance_cents => {
                Err(AccountError::InsufficientFunds {
                    balance_cents: self.balance_cents,
                    requested_cents: n,
                })
            }
            AccountCommand::Withdraw(n) => Ok(vec![AccountEvent::Withdrawn { amount_cents: n }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_overdraft_no_nonsense() {
        let account = Account { balance_cents: 100 };
        assert!(account.handle(AccountCommand::Withdraw(100)).is_ok());
        assert!(matches!(
            account.handle(AccountCommand::Withdraw(101)),
            Err(AccountError::InsufficientFunds { .. })
        ));
        for bad in [0, -5] {
            assert_eq!(
                account.handle(AccountCommand::Deposit(bad)),
                Err(AccountError::InvalidAmount)
            );
        }
        let full = Account {
            balance_cents: i64::MAX,
        };
        assert_eq!(
            full.handle(AccountCommand::Deposit(1)),
            Err(AccountError::Overflow)
        );
    }
}
