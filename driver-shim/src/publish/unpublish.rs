//! Taking a volume down: unmounting every tmpfs stacked on the target, then
//! removing what the shim made, and undoing a failed first publish.

use std::path::Path;

use tonic::Code;

use super::{Error, Shim, fail, target_error};
use crate::atomic_writer;
use crate::metrics::ResultLabels;
use crate::mount;
use crate::target::Target;

impl Shim {
    /// Undoes a failed first publish: the tmpfs it mounted, then the directory.
    pub(super) fn clean(&self, target: &Target) {
        if self.settings.use_tmpfs
            && let Ok(Some(dir)) = target.open()
            && mount::state(&dir).is_ok_and(|s| s == mount::State::Tmpfs)
        {
            drop(dir);
            if let Err(e) = mount::unmount(target.resolved()) {
                tracing::warn!(target = %target.requested().display(), error = %e, "cannot unmount after a failed publish");
                return;
            }
        }
        if let Err(e) = self.remove_target(target) {
            tracing::warn!(target = %target.requested().display(), error = %e.message, "cannot remove the target after a failed publish");
        }
    }

    /// Unmounts every tmpfs stacked at `target` (older versions mounted one per
    /// republish when the path reached it through a link), top first, each
    /// checked by identity before it is unmounted. Stops at a directory that
    /// is not a mount root; refuses to unmount another file system.
    fn unmount_all(&self, target: &Target) -> Result<usize, Error> {
        for unmounted in 0..mount::MAX_STACKED_MOUNTS {
            let Some(dir) = target.open().map_err(target_error)? else {
                return Ok(unmounted);
            };
            match mount::state(&dir) {
                Ok(mount::State::NotMounted) => return Ok(unmounted),
                Ok(mount::State::Tmpfs) => {}
                Ok(mount::State::Other { magic }) => {
                    return Err(fail(
                        Code::FailedPrecondition,
                        format!(
                            "{} is the root of a mount of file system type {magic:#x}, which the \
                             shim did not mount; it is left alone",
                            target.requested().display()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(fail(
                        Code::Internal,
                        format!(
                            "cannot tell whether {} is mounted: {e}",
                            target.requested().display()
                        ),
                    ));
                }
            }
            drop(dir);
            mount::unmount(target.resolved()).map_err(|e| {
                fail(
                    Code::Internal,
                    format!("cannot unmount {}: {e}", target.requested().display()),
                )
            })?;
        }
        Err(fail(
            Code::Internal,
            format!(
                "{} still has a tmpfs mounted after {} unmounts",
                target.requested().display(),
                mount::MAX_STACKED_MOUNTS
            ),
        ))
    }

    /// Removes the (unmounted) target directory. In tmpfs mode it is the
    /// volume's mount point, which kubelet wants gone: the whole tree goes,
    /// without following a link or entering another mount. Without tmpfs it is
    /// an operator's directory: only the writer's entries go, and the directory
    /// itself only if that empties it.
    fn remove_target(&self, target: &Target) -> Result<(), Error> {
        let internal = |op: &str, e: &dyn std::fmt::Display| {
            fail(
                Code::Internal,
                format!("cannot {op} {}: {e}", target.requested().display()),
            )
        };
        let (parent, name) = target.parent().map_err(target_error)?;
        if self.settings.use_tmpfs {
            return parent.remove(name).map_err(|e| internal("remove", &e));
        }
        let Some(dir) = target.open().map_err(target_error)? else {
            return Ok(());
        };
        if atomic_writer::clear(&dir).map_err(|e| internal("clear", &e))? {
            drop(dir);
            parent
                .remove_empty_dir(name)
                .map_err(|e| internal("remove", &e))?;
        } else {
            tracing::warn!(target = %target.requested().display(), "entries the shim did not write are left in place");
        }
        Ok(())
    }

    /// Unpublishes: unmounts every tmpfs at the target, removes the directory. A
    /// missing target is success; a link standing at the target is removed
    /// itself, never followed.
    pub fn unpublish(&self, path: &Path) -> Result<(), Error> {
        let result = self.unpublish_inner(path);
        self.metrics
            .unpublish
            .get_or_create(&ResultLabels {
                result: if result.is_ok() { "ok" } else { "error" },
            })
            .inc();
        result
    }

    fn unpublish_inner(&self, path: &Path) -> Result<(), Error> {
        let target = Target::locate(path, &self.settings.scope).map_err(target_error)?;
        let _busy = self.claim(target.resolved())?;
        if target.is_link() {
            tracing::warn!(target = %path.display(), "the target is a symbolic link; removing the link, not following it");
            let (parent, name) = target.parent().map_err(target_error)?;
            return parent.unlink(name).map_err(|e| {
                fail(
                    Code::Internal,
                    format!("cannot remove {}: {e}", path.display()),
                )
            });
        }
        if std::fs::symlink_metadata(target.resolved()).is_err() {
            return Ok(());
        }
        let target = self.resolve(path)?;
        if self.settings.use_tmpfs {
            let unmounted = self.unmount_all(&target)?;
            if unmounted > 1 {
                tracing::info!(target = %path.display(), unmounted, "removed stacked tmpfs mounts");
            }
        }
        self.remove_target(&target)
    }
}
