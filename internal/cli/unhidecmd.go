package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/storage"
)

func (a *App) repoUnhideCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unhide",
		Short: "Make locked objects hidden by a later overwrite or delete current again (immutable S3 repositories)",
		Long: `In a versioned S3 bucket with Object Lock, deleting or overwriting a locked
object (as ransomware with the repository's credentials would) only hides
it behind a delete marker or a newer version: the locked version stays.
unhide removes what hides the newest locked version of every object, so
that every point reads again. It needs no passphrase (config and key files
may be among what it brings back).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := a.backend(cmd.Context(), false)
			if err != nil {
				return err
			}
			u, ok := be.(storage.Unhider)
			if !ok {
				return errors.New(be.Location() + " keeps no versions: there is nothing to unhide")
			}
			names, err := u.Unhide(cmd.Context())
			if a.jsonOut {
				if jerr := a.printJSON(map[string]any{"restored": names}); jerr != nil {
					return jerr
				}
			} else {
				for _, n := range names {
					a.out("restored %s", n)
				}
				a.out("%d objects made current again", len(names))
			}
			return err
		},
	}
}
