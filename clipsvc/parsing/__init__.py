"""Request parsing: a form or JSON body -> validated images and texts (`items.ItemRules`, `items.ParsedRequest`).

Pure: no Flask globals and no model, so every rule is testable without an app. `form` reads multipart and
urlencoded bodies; each JSON body is a pydantic model beside its parser (`json_items` BentoML's, `openai_input`,
`jina_docs`, `truss`; `shapes` what they share), whose strings `sources` decodes, `fetch` allow-listed image
URLs; all of them end in the one image validator and the one text validator of `items`.
"""
