//! A [`Sender`] inside a message (Go's `chan chan T`). An unnamed channel's travels as its
//! receiver's node and id, and its type: the node that decodes it sends straight to that
//! receiver, with nothing to register (see `Switchboard::unnamed_route`). A named channel's
//! travels as its channel's name and type, and the receiving node that decodes it gets a
//! sender of that channel of its own. That sender registers on the decoding node (one Raft write, shared by
//! every sender of the channel decoded there while one lives), in the background from the
//! moment it is decoded; `send` waits for that registration to commit, as a first send waits
//! for a receiver. A sender decoded with another type than the channel's, or outside a receiver
//! (no node to send from), does not decode: a clear error, a dead letter where a receiver took it.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Registration, Sender};
use crate::channel::decoding;
use crate::channel::registrar::Registrar;
use crate::channel::router::unnamed::unnamed_name;
use crate::cluster::registry::{type_of, UNTYPED};
use crate::ids::{is_unnamed, EndpointId, NodeId};

impl<T> Serialize for Sender<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let route = &self.inner.route;
        // An unnamed channel's name is only shown: its owner and receiver say which it is.
        let name = if route.unnamed().is_some() { "" } else { route.name() };
        let mut admitted = route.owner_admitted.load(std::sync::atomic::Ordering::Relaxed);
        if admitted == 0
            && route.unnamed().is_some_and(|(owner, _)| owner == self.inner.node.replies().0)
        {
            // Made before this node saw its own admission: known by now, maybe.
            admitted = self.inner.node.admission();
            route.owner_admitted.store(admitted, std::sync::atomic::Ordering::Relaxed);
        }
        let unnamed = route.unnamed().map(|(owner, id)| (owner, id, admitted));
        let type_name = match &self.inner.id {
            super::Id::Registering(registering) => registering.type_name.as_str(),
            super::Id::Known(_) => crate::cluster::registry::static_type_of::<T>(),
        };
        (name, type_name, unnamed).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Sender<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (channel, type_name, unnamed) =
            <(String, String, Option<(NodeId, EndpointId, u64)>)>::deserialize(d)?;
        let channel = match unnamed {
            Some((_, id, _)) if !is_unnamed(id) => {
                return Err(D::Error::custom(format!(
                    "a sender of an unnamed channel with receiver {id}, which is not one"
                )));
            }
            Some((_, id, _)) => unnamed_name(id),
            None => channel,
        };
        let wanted = type_of::<T>();
        if type_name != wanted && type_name != UNTYPED && wanted != UNTYPED {
            return Err(D::Error::custom(format!(
                "a sender of channel {channel} carrying {type_name}, decoded as a sender of {wanted}"
            )));
        }
        let node = decoding::node();
        let node = node.as_ref().and_then(|n| n.downcast_ref::<Weak<dyn Registrar>>());
        let node = node.and_then(Weak::upgrade).ok_or_else(|| {
            D::Error::custom(format!(
                "a sender of channel {channel} decoded outside a receiver: no node to send from"
            ))
        })?;
        if let Some((owner, id, admitted)) = unnamed {
            let route = node.unnamed_route(owner, id, admitted);
            return Ok(Sender::unnamed(node, route));
        }
        crate::cluster::registry::check_name(&channel).map_err(D::Error::custom)?;
        Ok(Sender::decoded(node, &channel, wanted))
    }
}

impl<T> Sender<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// A sender of `channel` on `node`, decoded from a message: the registration of the
    /// channel's decoded senders on this node if one lives, or a new one, registering from now.
    fn decoded(node: Arc<dyn Registrar>, channel: &str, type_name: String) -> Self {
        let route = node.route(channel);
        route.typed::<T>();
        let mut slot = route.decoded();
        let shared = slot
            .as_ref()
            .filter(|(t, _)| *t == type_name)
            .and_then(|(_, w)| w.upgrade())
            .and_then(|r| r.downcast::<Registration>().ok());
        if let Some(inner) = shared {
            return Sender { inner, _t: PhantomData };
        }
        let id = super::Id::Registering(super::Registering::of(type_name.clone()));
        let inner = Arc::new(Registration { node: node.clone(), route: route.clone(), id });
        let any: Arc<dyn Any + Send + Sync> = inner.clone();
        *slot = Some((type_name, Arc::downgrade(&any)));
        drop(slot);
        let weak: Weak<Registration> = Arc::downgrade(&inner);
        node.spawn(Box::pin(async move {
            if let Some(registration) = weak.upgrade() {
                registration.ready().await;
            }
        }));
        Sender { inner, _t: PhantomData }
    }
}
