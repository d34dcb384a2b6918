//! Chains and their ordered rules.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, link, render_all, tenant_matches};
use crate::topo::Writer;
use model::{Chain, Rule, RuleType};
use serde_json::Value;
use uuid::Uuid;

impl Resource for Chain {
    const PATH: &'static str = "chains";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "rules".into(),
            link(base, format!("chains/{}/rules", self.id)),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.rule_ids.clear();
        Ok(())
    }
    fn matches(&self, req: &Req) -> bool {
        tenant_matches(&self.tenant_id, req)
    }
}

impl Resource for Rule {
    const PATH: &'static str = "rules";
    fn links(&self, app: &App, base: &str, m: &mut Links) {
        // Each type's own fields only: an accept rule shows no `natTargets`
        // or `failOpen` (midonet-cli prints whatever it is sent).
        let own = self.rule_type.own_fields();
        for f in model::chain::TYPE_FIELDS {
            if !own.contains(f) {
                m.remove(*f);
            }
        }
        m.insert(
            "chain".into(),
            link(base, format!("chains/{}", self.chain_id)),
        );
        if let Some(j) = self.jump_chain_id {
            m.insert("jumpChain".into(), link(base, format!("chains/{j}")));
        }
        // The position is the rule's current place in its chain, 1-based.
        if let Ok(Some(c)) = app.topo.get::<Chain>(self.chain_id)
            && let Some(i) = c.rule_ids.iter().position(|r| *r == self.id)
        {
            m.insert("position".into(), Value::from(i + 1));
        }
    }
    fn parent(&self) -> Option<Uuid> {
        Some(self.chain_id)
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.chain_id = parent;
        Ok(())
    }
    fn on_create(&mut self, w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.normalize();
        let mut chain: Chain = w.tx.must(self.chain_id, "chainId")?;
        let pos = self.position.max(1) as usize;
        if pos > chain.rule_ids.len() + 1 {
            return Err(ApiError::bad_request(format!(
                "position {pos} is out of range: the chain has {} rules",
                chain.rule_ids.len()
            )));
        }
        if self.rule_type == RuleType::Jump
            && let Some(j) = self.jump_chain_id
        {
            let target: Chain = w.tx.must(j, "jumpChainId")?;
            if j == self.chain_id {
                return Err(ApiError::bad_request(
                    "jumpChainId: a chain cannot jump to itself",
                ));
            }
            self.jump_chain_name = target.name;
        }
        self.position = pos as u32;
        chain.rule_ids.insert(pos - 1, self.id);
        w.tx.put(&chain);
        Ok(())
    }
}

/// A chain's rules in evaluation order.
pub fn chain_rules(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let chain: Chain = app.topo.must(req.id("id")?)?;
    let mut rules = Vec::with_capacity(chain.rule_ids.len());
    for id in &chain.rule_ids {
        if let Some(r) = app.topo.get::<Rule>(*id)? {
            rules.push(r);
        }
    }
    Ok(render_all(app, req, rules))
}
