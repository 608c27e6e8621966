"""Request parsing: a form or JSON body -> validated images and texts (`items.ItemRules`, `items.ParsedRequest`).

Pure: no Flask globals and no model, so every rule is testable without an app. `form` reads multipart and
urlencoded bodies, `json_items` BentoML's JSON items, `fetch` allow-listed image URLs; all of them end in
the one image validator and the one text validator of `items`.
"""
