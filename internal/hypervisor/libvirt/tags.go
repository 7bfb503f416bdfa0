package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// kura's tags live in the domain's metadata, in their own namespace:
//
//	<metadata>
//	  <kuratags:tags xmlns:kuratags="https://kurabackup.org/xmlns/libvirt/tags/1">
//	    <kuratags:tag>backup-daily</kuratags:tag>
//	  </kuratags:tags>
//	</metadata>
//
// They are part of the configuration: a backup records them and a
// restore brings them back.
const (
	tagsNS  = "https://kurabackup.org/xmlns/libvirt/tags/1"
	tagsKey = "kuratags"
)

// maxTags bounds how many tags a domain's metadata is read for.
const maxTags = 256

// domainTags reads kura's tags from a domain's metadata; anything else
// there (other applications' elements, a malformed one) is ignored.
func domainTags(x *libvirtxml.Domain) []string {
	if x.Metadata == nil || !strings.Contains(x.Metadata.XML, tagsNS) {
		return nil
	}
	return parseTags(x.Metadata.XML)
}

// parseTags finds the tags element of kura's namespace among the
// metadata's elements.
func parseTags(inner string) []string {
	dec := xml.NewDecoder(strings.NewReader(inner))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Space != tagsNS || se.Name.Local != "tags" {
			if dec.Skip() != nil {
				return nil
			}
			continue
		}
		var doc struct {
			Tags []string `xml:"tag"`
		}
		if err := dec.DecodeElement(&doc, &se); err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		var out []string
		for _, t := range doc.Tags {
			if t = strings.TrimSpace(t); hypervisor.CheckTag(t) == nil && len(out) < maxTags {
				out = append(out, t)
			}
		}
		tags, _ := hypervisor.EditTags(nil, out, nil, false)
		return tags
	}
}

// tagsElement renders tags as the metadata element DomainSetMetadata
// takes (libvirt adds the namespace declaration).
func tagsElement(tags []string) (string, error) {
	var b strings.Builder
	b.WriteString("<tags>")
	for _, t := range tags {
		if err := hypervisor.CheckTag(t); err != nil {
			return "", err
		}
		b.WriteString("<tag>")
		if err := xml.EscapeText(&b, []byte(t)); err != nil {
			return "", err
		}
		b.WriteString("</tag>")
	}
	b.WriteString("</tags>")
	return b.String(), nil
}

// SetTags implements hypervisor.Tagger: the tags go into the persistent
// configuration and, for a running VM, the live one.
func (c *Connector) SetTags(ctx context.Context, nameOrUUID string, tags []string) error {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	var meta golibvirt.OptString
	if len(tags) > 0 {
		el, err := tagsElement(tags)
		if err != nil {
			return err
		}
		meta = golibvirt.OptString{el}
	}
	persistent, err := c.lv.DomainIsPersistent(d)
	if err != nil {
		return mapErr("persistence of "+d.Name, err)
	}
	active, err := c.lv.DomainIsActive(d)
	if err != nil {
		return mapErr("state of "+d.Name, err)
	}
	var flags golibvirt.DomainModificationImpact
	if persistent == 1 {
		flags |= golibvirt.DomainAffectConfig
	}
	if active == 1 {
		flags |= golibvirt.DomainAffectLive
	}
	if err := c.lv.DomainSetMetadata(d, int32(golibvirt.DomainMetadataElement), meta,
		golibvirt.OptString{tagsKey}, golibvirt.OptString{tagsNS}, flags); err != nil {
		return mapErr(fmt.Sprintf("set tags of %s", d.Name), err)
	}
	c.log.Info("vm tags set", "vm", d.Name, "tags", hypervisor.FormatTags(tags))
	return nil
}

var _ hypervisor.Tagger = (*Connector)(nil)
